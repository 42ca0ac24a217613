/* Descriptor helpers shared by the codec's decoder and encoder. */
#ifndef HY_CODEC_INT_H
#define HY_CODEC_INT_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>

/* The message descriptor of a message-typed (or map) field. */
static inline const ProtobufCMessageDescriptor *hy_codec_msgdesc(const ProtobufCFieldDescriptor *f)
{
    return (const ProtobufCMessageDescriptor *)f->descriptor;
}

/* Field of d named key, in camelCase ("enabledBackend") or as in the
 * .proto ("enabled_backend"); NULL if none. */
const ProtobufCFieldDescriptor *hy_codec_find_field(const ProtobufCMessageDescriptor *d,
                                                    const char *key);
/* True when camel is the lowerCamelCase form of snake. */
bool hy_codec_camel_eq(const char *snake, const char *camel);

#endif
