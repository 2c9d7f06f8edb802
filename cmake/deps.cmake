# weld's three dependencies: zlib (CRC-32 and its combine), libdeflate
# (inflating zip records) and cJSON (config.json, manifests, --json).
#
# By default they are the system's shared libraries (Debian: zlib1g-dev,
# libdeflate-dev, libcjson-dev). With WELD_BUNDLED_DEPS=ON they are built here
# as static libraries from their release tarballs, fetched at configure time
# and checked against pinned SHA-256s (nothing of them is kept in the tree),
# with whatever compiler builds weld. That is what a portable binary needs:
# the system's .a files are built against the build machine's glibc, which is
# newer than a cluster's, and RHEL's base repositories carry neither cJSON nor
# libdeflate as shared libraries.
#
# Either way this defines ZLIB::ZLIB, CJSON_LIBRARY, CJSON_INCLUDE_DIR,
# LIBDEFLATE_LIBRARY and LIBDEFLATE_INCLUDE_DIR for the rest of the build.

option(WELD_BUNDLED_DEPS "Build zlib, libdeflate and cJSON from source and link them statically" OFF)
# The Debian .orig tarballs are the exact upstream releases Debian 12 ships
# (the versions weld is tested with). Offline, a file:// URL of a folder laid
# out like Debian's pool (c/cjson/, libd/libdeflate/, z/zlib/) works too.
set(WELD_DEPS_URL "http://deb.debian.org/debian/pool/main" CACHE STRING
    "Where WELD_BUNDLED_DEPS fetches the source tarballs: Debian's pool, or a file:// copy of its layout")

if(NOT WELD_BUNDLED_DEPS)
  find_package(ZLIB REQUIRED)
  find_path(CJSON_INCLUDE_DIR cjson/cJSON.h REQUIRED)
  find_library(CJSON_LIBRARY cjson REQUIRED)
  find_path(LIBDEFLATE_INCLUDE_DIR libdeflate.h REQUIRED)
  find_library(LIBDEFLATE_LIBRARY deflate REQUIRED)
  return()
endif()

include(FetchContent)
# weld_fetch(NAME FILE SHA256): the tarball FILE under WELD_DEPS_URL, unpacked; sets NAME_SOURCE_DIR.
function(weld_fetch name file sha)
  string(SUBSTRING "${file}" 0 1 initial)
  if(file MATCHES "^lib")
    string(SUBSTRING "${file}" 0 4 initial)
  endif()
  string(REGEX REPLACE "_.*" "" package "${file}")
  FetchContent_Declare(${name} URL "${WELD_DEPS_URL}/${initial}/${package}/${file}" URL_HASH SHA256=${sha}
                       DOWNLOAD_EXTRACT_TIMESTAMP ON)
  FetchContent_GetProperties(${name})
  if(NOT ${name}_POPULATED)
    FetchContent_Populate(${name})
  endif()
  set(${name}_SOURCE_DIR "${${name}_SOURCE_DIR}" PARENT_SCOPE)
endfunction()

weld_fetch(weld_zlib zlib_1.2.13.dfsg.orig.tar.bz2 71feb7947e3c00ef125f83b79a4e529bde31171e5babe48b391f06758d1ab0a1)
weld_fetch(weld_deflate libdeflate_1.14.orig.tar.gz 89e7df898c37c3427b0f39aadcf733731321a278771d20fc553f92da8d4808ac)
weld_fetch(weld_cjson cjson_1.7.15.orig.tar.gz 5308fd4bd90cef7aa060558514de6a1a4a0819974a26e6ed13973c5f624c24b2)

# zlib without gz*: weld needs only its CRC-32, and the gz file functions
# are the part that depends on the platform's headers.
set(_z ${weld_zlib_SOURCE_DIR})
add_library(weld_zlib STATIC ${_z}/adler32.c ${_z}/compress.c ${_z}/crc32.c ${_z}/deflate.c ${_z}/infback.c
            ${_z}/inffast.c ${_z}/inflate.c ${_z}/inftrees.c ${_z}/trees.c ${_z}/uncompr.c ${_z}/zutil.c)
target_include_directories(weld_zlib PUBLIC ${_z})
# As the configured zconf.h of a packaged zlib says (declares the 64-bit crc32_combine64).
target_compile_definitions(weld_zlib PUBLIC Z_HAVE_UNISTD_H)
add_library(ZLIB::ZLIB ALIAS weld_zlib)

# libdeflate builds from lib/*.c and lib/*/*.c alone, by its README; the
# architecture files guard themselves.
file(GLOB _deflate_sources ${weld_deflate_SOURCE_DIR}/lib/*.c ${weld_deflate_SOURCE_DIR}/lib/*/*.c)
add_library(weld_deflate STATIC ${_deflate_sources})
target_include_directories(weld_deflate PUBLIC ${weld_deflate_SOURCE_DIR})
set(LIBDEFLATE_INCLUDE_DIR ${weld_deflate_SOURCE_DIR})
set(LIBDEFLATE_LIBRARY weld_deflate)

# weld includes <cjson/cJSON.h>, as the packaged header is installed.
configure_file(${weld_cjson_SOURCE_DIR}/cJSON.h ${CMAKE_BINARY_DIR}/deps/include/cjson/cJSON.h COPYONLY)
add_library(weld_cjson STATIC ${weld_cjson_SOURCE_DIR}/cJSON.c)
set(CJSON_INCLUDE_DIR ${CMAKE_BINARY_DIR}/deps/include)
set(CJSON_LIBRARY weld_cjson)

# Linked into libweld.so too, so position-independent; built without
# warnings (they are not our code: zlib's K&R definitions warn on clang).
set_target_properties(weld_zlib weld_deflate weld_cjson PROPERTIES POSITION_INDEPENDENT_CODE ON C_STANDARD 99 C_EXTENSIONS ON)
foreach(t weld_zlib weld_deflate weld_cjson)
  target_compile_options(${t} PRIVATE -w)
endforeach()
