<?php

declare(strict_types=1);

namespace WsBridge\Goridge;

use WsBridge\Exception\InvalidArgumentException;
use WsBridge\Exception\ProtocolException;

/**
 * The goridge v3 frame, as roadrunner-server/goridge pkg/frame lays it out:
 *
 *   byte 0      version (high 4 bits) and header length in 32-bit words (low 4 bits)
 *   byte 1      flags (codec, ERROR)
 *   bytes 2-5   payload length, little endian
 *   bytes 6-9   CRC32 (IEEE) of bytes 0-5, little endian
 *   bytes 10-11 stream flags
 *   then        options, 4 bytes each, little endian: for RPC the sequence
 *               number and the length of the method name
 *   then        payload: the method name, then the body
 */
final class Frame
{
    public const VERSION = 1;
    public const HEADER_SIZE = 12;
    /** Header plus the two RPC options. */
    public const RPC_HEADER_SIZE = 20;

    public const CODEC_RAW = 0x04;
    public const CODEC_JSON = 0x08;
    public const CODEC_MSGPACK = 0x10;
    public const CODEC_GOB = 0x20;
    public const ERROR = 0x40;

    public const MAX_SEQ = 0xFFFFFFFF;

    private function __construct()
    {
    }

    /**
     * Encodes an RPC request (or response) frame.
     */
    public static function encode(int $flags, int $seq, string $method, string $body): string
    {
        if ($seq < 0 || $seq > self::MAX_SEQ) {
            throw new InvalidArgumentException("sequence number {$seq} is outside 0..2^32-1");
        }
        $payloadLen = \strlen($method) + \strlen($body);
        if ($payloadLen > 0xFFFFFFFF) {
            throw new InvalidArgumentException('payload too large for one frame');
        }
        $head = \pack('CCV', (self::VERSION << 4) | 5, $flags, $payloadLen);
        return $head . \pack('V', \crc32($head)) . "\0\0" . \pack('VV', $seq, \strlen($method)) . $method . $body;
    }

    /**
     * Checks the first 20 bytes of an RPC frame and returns its parts:
     * flags, payload length, sequence number, method length.
     *
     * @return array{flags: int, payloadLen: int, seq: int, methodLen: int}
     * @throws ProtocolException
     */
    public static function decodeHeader(string $header): array
    {
        if (\strlen($header) < self::RPC_HEADER_SIZE) {
            throw new ProtocolException('truncated frame header (' . \strlen($header) . ' bytes)');
        }
        /** @var array{b0: int, flags: int, len: int, crc: int} $h */
        $h = \unpack('Cb0/Cflags/Vlen/Vcrc', $header);
        if (\crc32(\substr($header, 0, 6)) !== $h['crc']) {
            throw new ProtocolException('frame header CRC mismatch');
        }
        if (($h['b0'] >> 4) !== self::VERSION) {
            throw new ProtocolException('unsupported frame version ' . ($h['b0'] >> 4));
        }
        if (($h['b0'] & 0x0F) !== 5) {
            throw new ProtocolException('an RPC frame carries exactly 2 options; header length is ' . ($h['b0'] & 0x0F) . ' words');
        }
        /** @var array{seq: int, mlen: int} $o */
        $o = \unpack('Vseq/Vmlen', $header, self::HEADER_SIZE);
        if ($o['mlen'] > $h['len']) {
            throw new ProtocolException("method length {$o['mlen']} is past the payload of {$h['len']} bytes");
        }
        return ['flags' => $h['flags'], 'payloadLen' => $h['len'], 'seq' => $o['seq'], 'methodLen' => $o['mlen']];
    }

    /**
     * Decodes a whole RPC frame.
     *
     * @return array{flags: int, seq: int, method: string, body: string}
     * @throws ProtocolException
     */
    public static function decode(string $frame): array
    {
        $h = self::decodeHeader($frame);
        $payload = \substr($frame, self::RPC_HEADER_SIZE);
        if (\strlen($payload) !== $h['payloadLen']) {
            throw new ProtocolException("frame payload is " . \strlen($payload) . " bytes, the header says {$h['payloadLen']}");
        }
        return [
            'flags' => $h['flags'],
            'seq' => $h['seq'],
            'method' => \substr($payload, 0, $h['methodLen']),
            'body' => \substr($payload, $h['methodLen']),
        ];
    }
}
