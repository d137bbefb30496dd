// libpng behind two calls that never longjmp into Swift: libpng reports errors by longjmp, which Swift frames must
// not be crossed by, so the setjmp lives here and errors come back as a return code and a message.
#ifndef SANA_PNG_H
#define SANA_PNG_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Writes an 8-bit RGB PNG (rows of width*3 bytes, top to bottom) with text chunks (tEXt for ASCII values, iTXt
/// for UTF-8 ones) to `path`, which is created or truncated. Returns 0 on success; otherwise nonzero with a message
/// in `error` (at most `error_size` bytes, NUL-terminated). The caller removes a partial file.
int sana_png_write_rgb8(const char *path, const uint8_t *rgb, uint32_t width, uint32_t height,
                        const char *const *keys, const char *const *values, int text_count,
                        char *error, size_t error_size);

/// Reads a PNG as 8-bit RGB. On success returns 0, sets *width and *height, and fills `rgb` if it holds at least
/// width*height*3 bytes (pass NULL / 0 first to learn the size). Text chunks are reported through `on_text`.
int sana_png_read_rgb8(const char *path, uint8_t *rgb, size_t rgb_size, uint32_t *width, uint32_t *height,
                       void (*on_text)(void *context, const char *key, const char *value), void *context,
                       char *error, size_t error_size);

#ifdef __cplusplus
}
#endif
#endif
