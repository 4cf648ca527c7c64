# Installs the build tree into PREFIX, checks that the headers sit under include/deltagrad/ (and
# nowhere at the top of include/), then builds and runs tests/consumer against the installed package
# with find_package.
#   cmake -DBUILD_DIR=... -DPREFIX=... -DSOURCE_DIR=... [-DLAUNCHER=ccache] -P install_consumer.cmake
file(REMOVE_RECURSE "${PREFIX}")
execute_process(COMMAND ${CMAKE_COMMAND} --install "${BUILD_DIR}" --prefix "${PREFIX}/usr"
                RESULT_VARIABLE status OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(status)
  message(FATAL_ERROR "cmake --install failed:\n${out}")
endif()
foreach(header autodiff/autodiff.hpp autodiff/format.hpp autodiff/ops/ops.hpp nn/nn.hpp)
  if(NOT EXISTS "${PREFIX}/usr/include/deltagrad/${header}")
    message(FATAL_ERROR "${header} is not installed under include/deltagrad/")
  endif()
endforeach()
foreach(top autodiff nn)
  if(EXISTS "${PREFIX}/usr/include/${top}")
    message(FATAL_ERROR "include/${top} installed at the top of include/: headers belong under include/deltagrad/")
  endif()
endforeach()
set(args -S "${SOURCE_DIR}/tests/consumer" -B "${PREFIX}/consumer" -DHOW=find_package
         "-DCMAKE_PREFIX_PATH=${PREFIX}/usr")
if(LAUNCHER)
  list(APPEND args "-DCMAKE_CXX_COMPILER_LAUNCHER=${LAUNCHER}")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} ${args} RESULT_VARIABLE status OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(status)
  message(FATAL_ERROR "configuring tests/consumer failed:\n${out}")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build "${PREFIX}/consumer" RESULT_VARIABLE status OUTPUT_VARIABLE out
                ERROR_VARIABLE out)
if(status)
  message(FATAL_ERROR "building tests/consumer failed:\n${out}")
endif()
execute_process(COMMAND "${PREFIX}/consumer/consumer" RESULT_VARIABLE status OUTPUT_VARIABLE out ERROR_VARIABLE out)
message("${out}")
if(status)
  message(FATAL_ERROR "tests/consumer exited with ${status}")
endif()
