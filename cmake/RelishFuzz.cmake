# The fuzzing harnesses (tests/fuzz/NAME.lua, one program each around
# tests/fuzz/driver.c). Every build replays their saved corpus
# (tests/fuzz/corpus/NAME: seeds and the inputs of crashes once found) as the
# test fuzz/NAME; with RELISH_FUZZ=ON (clang only) the programs are libFuzzer
# fuzzers, run by scripts/fuzz.sh, and everything is built with
# AddressSanitizer and UndefinedBehaviorSanitizer.

file(GLOB RELISH_FUZZ_TARGETS CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/tests/fuzz/*.lua)
list(FILTER RELISH_FUZZ_TARGETS EXCLUDE REGEX "/common\\.lua$")
foreach(script IN LISTS RELISH_FUZZ_TARGETS)
  get_filename_component(name ${script} NAME_WE)
  if(RELISH_FUZZ)
    add_executable(fuzz_${name} ${PROJECT_SOURCE_DIR}/tests/fuzz/driver.c)
    target_link_options(fuzz_${name} PRIVATE -fsanitize=fuzzer)
    target_compile_definitions(fuzz_${name} PRIVATE RELISH_LIBFUZZER)
    add_test(NAME fuzz/${name} COMMAND fuzz_${name} -runs=0 ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/${name})
  else()
    add_executable(fuzz_${name} ${PROJECT_SOURCE_DIR}/tests/fuzz/driver.c
      ${PROJECT_SOURCE_DIR}/tests/fuzz/replay.c)
    add_test(NAME fuzz/${name} COMMAND fuzz_${name} ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/${name})
  endif()
  target_compile_definitions(fuzz_${name} PRIVATE RELISH_FUZZ_SCRIPT="${script}")
  target_link_libraries(fuzz_${name} PRIVATE relish_core)
endforeach()
