# Registers the tests: C unit tests (tests/c/*.c, each its own program) and Lua
# tests (tests/lua/*_test.lua, each run through `relish test`).

file(GLOB RELISH_C_TESTS CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/tests/c/*.c)
foreach(src IN LISTS RELISH_C_TESTS)
  get_filename_component(name ${src} NAME_WE)
  add_executable(ctest_${name} ${src})
  target_include_directories(ctest_${name} PRIVATE ${PROJECT_SOURCE_DIR}/tests/c)
  target_link_libraries(ctest_${name} PRIVATE relish_core)
  add_test(NAME c/${name} COMMAND ctest_${name}
    WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
  set_tests_properties(c/${name} PROPERTIES ENVIRONMENT "RELISH_EXE=$<TARGET_FILE:relish>")
endforeach()

file(GLOB RELISH_LUA_TESTS CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/tests/lua/*_test.lua)
foreach(src IN LISTS RELISH_LUA_TESTS)
  get_filename_component(name ${src} NAME_WE)
  string(REGEX REPLACE "_test$" "" name ${name})
  add_test(NAME lua/${name} COMMAND relish test ${src}
    WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
  set_tests_properties(lua/${name} PROPERTIES TIMEOUT 300)
endforeach()

# `cmake --build build --target docs` regenerates docs/recipes/ from recipes/
# (relish doc). Nothing depends on it; tests/lua/doc_test.lua fails when the
# checked-in pages are stale.
add_custom_target(docs
  COMMAND relish doc recipes -o docs/recipes
  WORKING_DIRECTORY ${PROJECT_SOURCE_DIR}
  COMMENT "Generating docs/recipes/ with relish doc"
  VERBATIM)
