# mmuvisor_cc_library(<name> [SOURCES <file>...] [PUBLIC <dep>...] [PRIVATE <dep>...])
#
# One library of the project: a static library `mmuvisor_<name>` (INTERFACE when it has no
# sources) with the alias `mmuvisor::<name>`, the repository root as its public include
# directory (headers are included by their path in the tree: "notifier/hub.h"; installed
# under include/mmuvisor/), the given dependencies, and the host warnings, sanitizers and
# thread-safety analysis of mmuvisor_host_target(). Every folder's CMakeLists.txt declares
# its library with it, so no library differs from the others by accident.
function(mmuvisor_cc_library name)
  cmake_parse_arguments(PARSE_ARGV 1 arg "" "" "SOURCES;PUBLIC;PRIVATE")
  if(arg_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "mmuvisor_cc_library(${name}): unknown arguments ${arg_UNPARSED_ARGUMENTS}")
  endif()
  set(target mmuvisor_${name})
  if(arg_SOURCES)
    add_library(${target} STATIC ${arg_SOURCES})
    target_include_directories(${target} PUBLIC
        $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}> $<INSTALL_INTERFACE:include/mmuvisor>)
    target_link_libraries(${target} PUBLIC ${arg_PUBLIC} PRIVATE ${arg_PRIVATE})
    mmuvisor_host_target(${target})
  else()
    if(arg_PRIVATE)
      message(FATAL_ERROR "mmuvisor_cc_library(${name}): a header-only library has no PRIVATE deps")
    endif()
    add_library(${target} INTERFACE)
    target_include_directories(${target} INTERFACE
        $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}> $<INSTALL_INTERFACE:include/mmuvisor>)
    target_link_libraries(${target} INTERFACE ${arg_PUBLIC})
  endif()
  add_library(mmuvisor::${name} ALIAS ${target})
endfunction()
