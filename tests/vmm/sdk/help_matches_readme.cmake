# ctest sdk.run_help_matches_readme: the built-in guests `mmuvisor run --help` lists are
# exactly those the top-level README lists for `mmuvisor run` (issue 17: they disagreed).
#   cmake -DBIN=<mmuvisor> -DREADME=<README.md> -P help_matches_readme.cmake
execute_process(COMMAND ${BIN} run --help OUTPUT_VARIABLE help RESULT_VARIABLE rc TIMEOUT 60)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "mmuvisor run --help: exit ${rc}")
endif()
if(NOT help MATCHES "a built-in guest \\(([^)]*)\\)")
  message(FATAL_ERROR "run --help names no built-in guests:\n${help}")
endif()
string(REGEX REPLACE "[ \n]+" "" help_list "${CMAKE_MATCH_1}")
string(REPLACE "," ";" help_list "${help_list}")

file(READ ${README} readme)
if(NOT readme MATCHES "`GUEST` is a built-in image \\(([^)]*)\\)")
  message(FATAL_ERROR "${README}: no \"`GUEST` is a built-in image (...)\" list")
endif()
string(REGEX MATCHALL "`[a-z0-9_-]+`" readme_list "${CMAKE_MATCH_1}")
string(REPLACE "`" "" readme_list "${readme_list}")

list(SORT help_list)
list(SORT readme_list)
if(NOT help_list STREQUAL readme_list)
  message(FATAL_ERROR "run --help lists '${help_list}', the README '${readme_list}'")
endif()
message(STATUS "run --help and the README both list: ${help_list}")
