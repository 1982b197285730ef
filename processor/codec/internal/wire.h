// Protobuf wire-format primitives (varints, tags) shared by the protobuf
// decoder and encoder.
#ifndef TALLY_PROCESSOR_CODEC_INTERNAL_WIRE_H_
#define TALLY_PROCESSOR_CODEC_INTERNAL_WIRE_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace tally::codec_internal::wire {

enum WireType : uint8_t {
  kVarint = 0,
  kFixed64 = 1,
  kLengthDelimited = 2,
  kStartGroup = 3,
  kEndGroup = 4,
  kFixed32 = 5,
};

inline constexpr uint32_t kMaxFieldNumber = (1u << 29) - 1;

struct Field {
  uint32_t number = 0;
  uint8_t wire_type = 0;
  uint64_t varint = 0;     // wire type 0 (and the raw bits of types 1 and 5)
  std::string_view bytes;  // wire type 2
};

// Splits a message into fields without interpreting them.
class Reader {
 public:
  explicit Reader(std::string_view data)
      : p_(reinterpret_cast<const uint8_t*>(data.data())), end_(p_ + data.size()) {}

  bool done() const { return p_ == end_; }

  // Reads the next field. Returns false, with a reason in *error, if the
  // bytes are not a well-formed field (then the reader is stuck).
  bool Next(Field* f, const char** error) {
    uint64_t tag;
    if (!ReadVarint(&tag)) {
      *error = "truncated or over-long varint in a tag";
      return false;
    }
    if (tag > UINT32_MAX || (tag >> 3) == 0 || (tag >> 3) > kMaxFieldNumber) {
      *error = "invalid field number";
      return false;
    }
    f->number = static_cast<uint32_t>(tag >> 3);
    f->wire_type = static_cast<uint8_t>(tag & 7);
    switch (f->wire_type) {
      case kVarint:
        if (!ReadVarint(&f->varint)) {
          *error = "truncated or over-long varint";
          return false;
        }
        return true;
      case kFixed64:
        return ReadFixed(8, f, error);
      case kFixed32:
        return ReadFixed(4, f, error);
      case kLengthDelimited: {
        uint64_t length;
        if (!ReadVarint(&length)) {
          *error = "truncated or over-long length";
          return false;
        }
        if (length > static_cast<uint64_t>(end_ - p_)) {
          *error = "length-delimited field runs past the end";
          return false;
        }
        f->bytes = std::string_view(reinterpret_cast<const char*>(p_), length);
        p_ += length;
        return true;
      }
      case kStartGroup:
      case kEndGroup:
        *error = "groups (wire types 3 and 4) are not supported";
        return false;
      default:
        *error = "invalid wire type";
        return false;
    }
  }

 private:
  // At most 10 bytes, as in libprotobuf; excess high bits of the tenth byte
  // are dropped the same way.
  bool ReadVarint(uint64_t* out) {
    if (p_ < end_ && *p_ < 0x80) {
      *out = *p_++;
      return true;
    }
    uint64_t v = 0;
    for (int i = 0; i < 10; ++i) {
      if (p_ == end_) return false;
      const uint8_t b = *p_++;
      v |= static_cast<uint64_t>(b & 0x7f) << (7 * i);
      if (b < 0x80) {
        *out = v;
        return true;
      }
    }
    return false;
  }

  bool ReadFixed(size_t n, Field* f, const char** error) {
    if (static_cast<size_t>(end_ - p_) < n) {
      *error = "truncated fixed-width field";
      return false;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i) v |= static_cast<uint64_t>(p_[i]) << (8 * i);
    p_ += n;
    f->varint = v;
    return true;
  }

  const uint8_t* p_;
  const uint8_t* end_;
};

inline void AppendVarint(std::string* out, uint64_t v) {
  char buffer[10];
  size_t n = 0;
  while (v >= 0x80) {
    buffer[n++] = static_cast<char>((v & 0x7f) | 0x80);
    v >>= 7;
  }
  buffer[n++] = static_cast<char>(v);
  out->append(buffer, n);
}

inline void AppendTag(std::string* out, uint32_t number, WireType type) {
  AppendVarint(out, (static_cast<uint64_t>(number) << 3) | type);
}

inline void AppendBytes(std::string* out, uint32_t number, std::string_view bytes) {
  AppendTag(out, number, kLengthDelimited);
  AppendVarint(out, bytes.size());
  out->append(bytes);
}

// int64 and int32 alike: negative values are sign-extended to ten bytes.
inline void AppendInt(std::string* out, uint32_t number, int64_t value) {
  AppendTag(out, number, kVarint);
  AppendVarint(out, static_cast<uint64_t>(value));
}

}  // namespace tally::codec_internal::wire

#endif  // TALLY_PROCESSOR_CODEC_INTERNAL_WIRE_H_
