// See include/sana_png.h. One setjmp per call; every libpng error or warning lands in the caller's message buffer.
#include "sana_png.h"

#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    jmp_buf jump;
    char *error;
    size_t error_size;
} sana_png_context;

static void sana_png_error(png_structp png, png_const_charp message) {
    sana_png_context *ctx = (sana_png_context *)png_get_error_ptr(png);
    if (ctx->error && ctx->error_size) snprintf(ctx->error, ctx->error_size, "libpng: %s", message);
    longjmp(ctx->jump, 1);
}

static void sana_png_warning(png_structp png, png_const_charp message) { (void)png; (void)message; }

static void set_error(char *error, size_t size, const char *message) {
    if (error && size) snprintf(error, size, "%s", message);
}

static void set_path_error(char *error, size_t size, const char *what, const char *path) {
    if (error && size) snprintf(error, size, "%s %s", what, path);
}

static int is_ascii(const char *s) {
    for (; *s; s++) if ((unsigned char)*s >= 0x80) return 0;
    return 1;
}

int sana_png_write_rgb8(const char *path, const uint8_t *rgb, uint32_t width, uint32_t height,
                        const char *const *keys, const char *const *values, int text_count,
                        char *error, size_t error_size) {
    if (width == 0 || height == 0 || width > PNG_UINT_31_MAX / 3 || height > PNG_UINT_31_MAX) {
        set_error(error, error_size, "image size out of range");
        return 1;
    }
    FILE *file = fopen(path, "wb");
    if (!file) {
        set_path_error(error, error_size, "cannot create", path);
        return 1;
    }
    sana_png_context ctx = {.error = error, .error_size = error_size};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &ctx, sana_png_error, sana_png_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    png_textp text = NULL;
    if (!png || !info) {
        set_error(error, error_size, "libpng: out of memory");
        png_destroy_write_struct(&png, &info);
        fclose(file);
        return 1;
    }
    // Assigned before setjmp and never changed afterwards, so it is still valid after a longjmp.
    if (text_count > 0) text = (png_textp)calloc((size_t)text_count, sizeof(png_text));
    if (setjmp(ctx.jump)) {
        png_destroy_write_struct(&png, &info);
        free(text);
        fclose(file);
        return 1;
    }
    png_init_io(png, file);
    png_set_IHDR(png, info, width, height, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    if (text_count > 0) {
        if (!text) png_error(png, "out of memory");
        for (int i = 0; i < text_count; i++) {
            text[i].key = (png_charp)keys[i];
            text[i].text = (png_charp)values[i];
            text[i].text_length = strlen(values[i]);
            // tEXt is Latin-1; UTF-8 values go in iTXt (uncompressed, no language tag).
            text[i].compression = is_ascii(values[i]) ? PNG_TEXT_COMPRESSION_NONE : PNG_ITXT_COMPRESSION_NONE;
        }
        png_set_text(png, info, text, text_count);
    }
    png_write_info(png, info);
    for (uint32_t y = 0; y < height; y++) png_write_row(png, (png_const_bytep)(rgb + (size_t)y * width * 3));
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    free(text);
    if (fflush(file) != 0 || fclose(file) != 0) {
        set_path_error(error, error_size, "cannot write", path);
        return 1;
    }
    return 0;
}

int sana_png_read_rgb8(const char *path, uint8_t *rgb, size_t rgb_size, uint32_t *width, uint32_t *height,
                       void (*on_text)(void *context, const char *key, const char *value), void *context,
                       char *error, size_t error_size) {
    FILE *file = fopen(path, "rb");
    if (!file) {
        set_path_error(error, error_size, "cannot open", path);
        return 1;
    }
    sana_png_context ctx = {.error = error, .error_size = error_size};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &ctx, sana_png_error, sana_png_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        set_error(error, error_size, "libpng: out of memory");
        png_destroy_read_struct(&png, &info, NULL);
        fclose(file);
        return 1;
    }
    if (setjmp(ctx.jump)) {
        png_destroy_read_struct(&png, &info, NULL);
        fclose(file);
        return 1;
    }
    png_init_io(png, file);
    png_read_info(png, info);
    uint32_t w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    int color = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
    if (color != PNG_COLOR_TYPE_RGB || depth != 8) png_error(png, "not an 8-bit RGB image");
    *width = w;
    *height = h;
    if (rgb && rgb_size >= (size_t)w * h * 3) {
        for (uint32_t y = 0; y < h; y++) png_read_row(png, rgb + (size_t)y * w * 3, NULL);
        png_read_end(png, info);
        png_textp text;
        int count = 0;
        png_get_text(png, info, &text, &count);
        for (int i = 0; i < count && on_text; i++) on_text(context, text[i].key, text[i].text);
    }
    png_destroy_read_struct(&png, &info, NULL);
    fclose(file);
    return 0;
}
