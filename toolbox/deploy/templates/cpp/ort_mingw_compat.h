/* Force-included when building with MinGW-w64 (see CMakeLists.txt): onnxruntime_c_api.h uses two
   MSVC-only spellings that MinGW's headers lack. */
#pragma once
#include <specstrings.h>
#ifndef _Return_type_success_
#define _Return_type_success_(expr)
#endif
#ifndef _stdcall
#define _stdcall __stdcall
#endif
