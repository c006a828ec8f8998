# Runs the mmuvisor binary once and checks its exit code and output: one ctest per bad
# input (issue 2 item 6). Invoked as
#   cmake -DBIN=... -DARGS="a|b" -DCODE=2 -DSTDERR_REGEX=... [-DSTDOUT_REGEX=...] -P expect_cli.cmake
# Bad input must produce exactly one line on stderr.
string(REPLACE "|" ";" ARGS "${ARGS}")  # joined by '|' in CMakeLists.txt
execute_process(COMMAND ${BIN} ${ARGS}
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 60)
if(NOT rc STREQUAL "${CODE}")
  message(FATAL_ERROR "mmuvisor ${ARGS}: exit code '${rc}', expected ${CODE}\nstdout: ${out}\nstderr: ${err}")
endif()
if(DEFINED STDERR_REGEX)
  if(NOT err MATCHES "${STDERR_REGEX}")
    message(FATAL_ERROR "mmuvisor ${ARGS}: stderr does not match '${STDERR_REGEX}':\n${err}")
  endif()
  string(REGEX MATCHALL "\n" newlines "${err}")
  list(LENGTH newlines n)
  if(NOT n EQUAL 1)
    message(FATAL_ERROR "mmuvisor ${ARGS}: expected one line on stderr, got ${n}:\n${err}")
  endif()
endif()
if(DEFINED STDOUT_REGEX AND NOT out MATCHES "${STDOUT_REGEX}")
  message(FATAL_ERROR "mmuvisor ${ARGS}: stdout does not match '${STDOUT_REGEX}':\n${out}")
endif()
message(STATUS "mmuvisor ${ARGS}: exit ${rc} as expected; stderr: ${err}")
