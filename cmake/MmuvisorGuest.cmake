# The mmuvisor guest SDK's CMake function: builds a freestanding guest ELF image that
# `mmuvisor run` boots. Used by the in-tree guests (guests/CMakeLists.txt) and installed
# with the package, so `find_package(mmuvisor CONFIG REQUIRED)` gives the same function
# to an out-of-tree project (guests/README.md).
#
#   mmuvisor_add_guest(<target> SOURCES <file>... [MODE long64|real16]
#                      [OUTPUT_NAME <name>] [OUTPUT_DIRECTORY <dir>]
#                      [LINKER_SCRIPT <file.ld>])
#
# MODE long64 (default): C/assembly sources linked with the guest runtime
#   (mmuvisor::guest_runtime: _start, mmv_main's caller, ucall, serial, printf-lite,
#   mem*/strlen and the boot-mode note) at MMV_IMAGE_GPA by long64.ld.
# MODE real16: sources linked alone at MMV_REAL_MODE_LOAD_GPA by real16.ld; they provide
#   _start (.code16) and the real-mode boot-mode note themselves (guests/hello16).
# The image is <OUTPUT_DIRECTORY>/<OUTPUT_NAME> (defaults: the current binary dir and
# <target>). Needs the C language (and ASM for assembly sources) enabled by the caller.
#
# Expects, set by whoever includes this file: the targets mmuvisor::guest_abi and
# mmuvisor::guest_runtime, and MMUVISOR_GUEST_LINKER_SCRIPT_DIR (holding long64.ld and
# real16.ld).
include_guard(GLOBAL)

# Flags for code that runs in the guest. Never the host's warning/sanitizer flags.
# -mgeneral-regs-only: ring-0 guest code is instruction-emulated on shadow-paging hosts and
# the emulator stops at SSE. -O2 even in Debug builds keeps ring-0/real-mode paths short.
# -fno-builtin / -fno-tree-loop-distribute-patterns: no library calls the runtime lacks.
function(mmuvisor_guest_compile_options target)
  set(cflags
      -std=gnu11 -O2 -ffreestanding -fno-builtin
      -fno-pie -fno-pic -mno-red-zone -mgeneral-regs-only -mcmodel=small
      -fno-stack-protector -fno-asynchronous-unwind-tables -fno-unwind-tables
      -fcf-protection=none -fno-omit-frame-pointer
      # ASSERT texts name files relative to the project's source directory.
      -fmacro-prefix-map=${PROJECT_SOURCE_DIR}/=
      -Wall -Wextra
      $<$<C_COMPILER_ID:GNU>:-fno-tree-loop-distribute-patterns>)
  if(MMUVISOR_WERROR)
    list(APPEND cflags -Werror)
  endif()
  target_compile_options(${target} PRIVATE -g $<$<COMPILE_LANGUAGE:C>:${cflags}>)
endfunction()

function(mmuvisor_add_guest target)
  cmake_parse_arguments(G "" "MODE;OUTPUT_NAME;OUTPUT_DIRECTORY;LINKER_SCRIPT" "SOURCES"
                        ${ARGN})
  if(G_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "mmuvisor_add_guest(${target}): unknown arguments ${G_UNPARSED_ARGUMENTS}")
  endif()
  if(NOT G_SOURCES)
    message(FATAL_ERROR "mmuvisor_add_guest(${target}): no SOURCES")
  endif()
  if(NOT G_MODE)
    set(G_MODE long64)
  endif()
  if(NOT G_MODE MATCHES "^(long64|real16)$")
    message(FATAL_ERROR "mmuvisor_add_guest(${target}): MODE '${G_MODE}' is not long64 or real16")
  endif()
  if(NOT G_LINKER_SCRIPT)
    set(G_LINKER_SCRIPT ${MMUVISOR_GUEST_LINKER_SCRIPT_DIR}/${G_MODE}.ld)
  endif()
  add_executable(${target} ${G_SOURCES})
  if(G_OUTPUT_NAME)
    set_target_properties(${target} PROPERTIES OUTPUT_NAME ${G_OUTPUT_NAME})
  endif()
  if(G_OUTPUT_DIRECTORY)
    set_target_properties(${target} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${G_OUTPUT_DIRECTORY})
  endif()
  set_target_properties(${target} PROPERTIES LINK_DEPENDS ${G_LINKER_SCRIPT})
  mmuvisor_guest_compile_options(${target})
  if(G_MODE STREQUAL "long64")
    target_link_libraries(${target} PRIVATE mmuvisor::guest_runtime)
  else()
    target_link_libraries(${target} PRIVATE mmuvisor::guest_abi)
  endif()
  target_link_options(${target} PRIVATE -nostdlib -static $<$<C_COMPILER_ID:GNU>:-no-pie>
      -Wl,-T,${G_LINKER_SCRIPT}
      -Wl,--build-id=none -Wl,-z,max-page-size=0x1000 -Wl,-z,noexecstack
      -Wl,--no-dynamic-linker)
endfunction()
