# Per-target warning and sanitizer settings: no global flags, so freestanding guests never
# inherit sanitizer or hosted-code options.

# Interface target carrying the sanitizer flags chosen by MMUVISOR_SANITIZE. Host targets
# link it; guests do not.
add_library(mmuvisor_sanitizers INTERFACE)
if(MMUVISOR_SANITIZE)
  target_compile_options(mmuvisor_sanitizers INTERFACE
      -fsanitize=${MMUVISOR_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  target_link_options(mmuvisor_sanitizers INTERFACE -fsanitize=${MMUVISOR_SANITIZE})
endif()

# mmuvisor_host_target(<target>): warnings, sanitizers and thread-safety analysis for code
# that runs on the host.
function(mmuvisor_host_target target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wshadow -Wnon-virtual-dtor
      -Wimplicit-fallthrough -Wno-missing-field-initializers)
  if(MMUVISOR_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
  if(MMUVISOR_THREAD_SAFETY AND CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    target_compile_options(${target} PRIVATE -Wthread-safety -Werror=thread-safety)
  endif()
  target_link_libraries(${target} PRIVATE mmuvisor_sanitizers)
endfunction()
