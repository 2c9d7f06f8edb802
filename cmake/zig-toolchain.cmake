# CMake toolchain: build with `zig cc` for x86_64 Linux with glibc WELD_GLIBC
# (default 2.28, RHEL/Rocky 8; every later glibc runs it too).
#
#   cmake -S . -B build-release --toolchain cmake/zig-toolchain.cmake -DWELD_BUNDLED_DEPS=ON -DWELD_CUDA=OFF
#
# zig ships the headers and symbol-versioned stubs of every glibc release, so
# the binary links only against symbols that existed in that glibc: this is
# how the glibc floor is chosen without an old distribution's sysroot.
# zig is found as WELD_ZIG (a path), else `zig` on PATH, else the `ziglang`
# Python package (pip install ziglang) of Python3_EXECUTABLE or python3.
# scripts/build-release and pyproject.toml use this file.
set(WELD_GLIBC 2.28 CACHE STRING "Oldest glibc the zig-built weld runs on")

if(NOT WELD_ZIG AND DEFINED ENV{WELD_ZIG})
  set(WELD_ZIG $ENV{WELD_ZIG})
endif()
if(NOT WELD_ZIG)
  find_program(_weld_zig_on_path zig)
  if(_weld_zig_on_path)
    set(WELD_ZIG ${_weld_zig_on_path})
  else()
    set(_py python3)
    if(Python3_EXECUTABLE)
      set(_py ${Python3_EXECUTABLE})
    elseif(Python_EXECUTABLE)
      set(_py ${Python_EXECUTABLE})
    endif()
    execute_process(COMMAND ${_py} -c "import os, ziglang; print(os.path.join(os.path.dirname(ziglang.__file__), 'zig'))"
                    OUTPUT_VARIABLE _weld_zig OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _rc ERROR_QUIET)
    if(NOT _rc EQUAL 0 OR NOT EXISTS "${_weld_zig}")
      message(FATAL_ERROR "zig-toolchain: no zig found: set WELD_ZIG, put zig on PATH, or `${_py} -m pip install ziglang`")
    endif()
    set(WELD_ZIG ${_weld_zig})
  endif()
endif()
set(WELD_ZIG ${WELD_ZIG} CACHE FILEPATH "The zig executable")
# CMake reads this file again for each try_compile, in a project of its own.
set(ENV{WELD_ZIG} ${WELD_ZIG})
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES WELD_GLIBC)

# A two-item compiler is CMake's "program plus first argument" (zig cc).
set(CMAKE_C_COMPILER ${WELD_ZIG} cc)
set(CMAKE_C_FLAGS_INIT "-target x86_64-linux-gnu.${WELD_GLIBC}")
# The system's ar and ranlib archive zig's objects (plain ELF). No
# CMAKE_SYSTEM_NAME: this is a Linux x86_64 build for an older glibc, not a
# cross build, so the binary runs here and the tests and the man pages'
# generation run it as on a native build.
