// The stb single-file libraries' implementations, in their own translation unit so they compile in
// parallel with the rest (and once).
#define STB_IMAGE_IMPLEMENTATION
#define STBI_NO_HDR
#include <stb/stb_image.h>
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>
