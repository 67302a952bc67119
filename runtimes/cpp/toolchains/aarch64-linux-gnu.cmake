# Cross-compile the native runner for aarch64 Linux with Debian's g++-aarch64-linux-gnu
# (apt-get install g++-aarch64-linux-gnu; scripts/system-deps.sh installs it).
#   cmake -S runtimes/cpp -B build/native/aarch64/cmake \
#         -DCMAKE_TOOLCHAIN_FILE=runtimes/cpp/toolchains/aarch64-linux-gnu.cmake ...
# runtimes/cpp/build.sh --arch aarch64 does this (and fetches the aarch64 wheels first).
# The runtime libraries come from the aarch64 wheels, not from the sysroot, so the search for
# libraries and headers stays in the cross sysroot plus the paths given on the command line.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(EDGEKD_CROSS_PREFIX aarch64-linux-gnu- CACHE STRING "prefix of the cross tools")
set(CMAKE_C_COMPILER ${EDGEKD_CROSS_PREFIX}gcc)
set(CMAKE_CXX_COMPILER ${EDGEKD_CROSS_PREFIX}g++)

# Debian's multiarch cross sysroot.
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)   # build tools run on the host
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY BOTH)    # the wheels' libs live outside the sysroot
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)
