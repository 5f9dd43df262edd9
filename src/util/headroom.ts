// Buffers with spare bytes in front: OpenStream's data frames are encoded in
// place (gRPC's 5-byte message prefix and the few bytes of protobuf field
// header written just before the data) instead of being copied into a fresh
// message buffer, which cost a copy of every byte streamed and a 2 MiB
// allocation per frame (a third of the plugin's main thread went to the
// garbage collector). The transfer engine marks the ranges it reads with
// FRAME_HEADROOM bytes reserved in front; the wire encodes a range's first
// frame into that room and each later frame over the tail of the frame before.
// So a frame may only be encoded once the frame before it is no longer read:
// copied by grpc-js (wire/proto.ts, the protobuf header only), or written to
// the socket (wire/frames-in-place.ts, the whole gRPC message).
export const FRAME_HEADROOM = 16;

/** gRPC's length prefix of a message: a compressed flag and a 4-byte big-endian length. */
const GRPC_PREFIX = 5;

const roomy = new WeakSet<Buffer>();

/** `buf` has FRAME_HEADROOM bytes before it, in its ArrayBuffer, that nothing else uses. */
export function markHeadroom(buf: Buffer): Buffer {
  roomy.add(buf);
  return buf;
}

export function hasHeadroom(buf: Buffer): boolean {
  return roomy.has(buf);
}

/**
 * The protobuf encoding of `{ data }` as field 1 (bytes), made by writing the
 * field's tag and length into the bytes just before `data`: no copy of the data.
 */
export function encodeBytesFieldInPlace(data: Buffer): Buffer {
  let len = data.length;
  const varint: number[] = [];
  do {
    let b = len & 0x7f;
    len = Math.floor(len / 128);
    if (len > 0) b |= 0x80;
    varint.push(b);
  } while (len > 0);
  const head = 1 + varint.length;
  if (head > FRAME_HEADROOM || data.byteOffset < head) throw new Error("no headroom in front of the frame");
  const out = Buffer.from(data.buffer, data.byteOffset - head, head + data.length);
  out[0] = 0x0a; // field 1, wire type 2 (length-delimited)
  for (let i = 0; i < varint.length; i++) out[1 + i] = varint[i]!;
  return out;
}

/**
 * The whole gRPC message for `{ data }` (length prefix, then the protobuf
 * encoding), written into the bytes before `data`: what grpc-js would send,
 * without its copy.
 */
export function grpcMessageInPlace(data: Buffer): Buffer {
  const message = encodeBytesFieldInPlace(data);
  if (message.byteOffset < GRPC_PREFIX || message.length - data.length + GRPC_PREFIX > FRAME_HEADROOM)
    throw new Error("no headroom in front of the frame");
  const out = Buffer.from(message.buffer, message.byteOffset - GRPC_PREFIX, GRPC_PREFIX + message.length);
  out[0] = 0; // not compressed
  out.writeUInt32BE(message.length, 1);
  return out;
}
