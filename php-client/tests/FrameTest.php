<?php

declare(strict_types=1);

namespace WsBridge\Tests;

use PHPUnit\Framework\TestCase;
use WsBridge\Exception\ProtocolException;
use WsBridge\Goridge\Frame;

/**
 * Frames against golden files made by the goridge Go library
 * (rpc/golden_test.go writes tests/fixtures/frames).
 */
final class FrameTest extends TestCase
{
    private const DIR = __DIR__ . '/fixtures/frames';

    /**
     * @return array<string, array{array<string, mixed>, string}>
     */
    public static function goldenFrames(): array
    {
        $manifest = \json_decode((string) \file_get_contents(self::DIR . '/manifest.json'), true, 512, \JSON_THROW_ON_ERROR);
        $cases = [];
        foreach ($manifest as $case) {
            $cases[$case['file']] = [$case, (string) \file_get_contents(self::DIR . '/' . $case['file'])];
        }
        return $cases;
    }

    /**
     * @dataProvider goldenFrames
     * @param array<string, mixed> $case
     */
    public function testDecodesWhatGoridgeEncodes(array $case, string $bytes): void
    {
        $f = Frame::decode($bytes);
        self::assertSame($case['seq'], $f['seq']);
        self::assertSame($case['method'], $f['method']);
        self::assertSame($case['error'], ($f['flags'] & Frame::ERROR) !== 0);
        self::assertNotSame(0, $f['flags'] & Frame::CODEC_JSON);
        if (isset($case['body_sha256'])) {
            self::assertSame($case['body_len'], \strlen($f['body']));
            self::assertSame($case['body_sha256'], \hash('sha256', $f['body']));
        } else {
            self::assertSame($case['body'], $f['body']);
        }
    }

    /**
     * @dataProvider goldenFrames
     * @param array<string, mixed> $case
     */
    public function testEncodesWhatGoridgeEncodes(array $case, string $bytes): void
    {
        if ($case['kind'] !== 'request') {
            $this->expectNotToPerformAssertions();
            return; // responses are goridge's server codec's to make
        }
        $body = Frame::decode($bytes)['body'];
        self::assertSame(\bin2hex($bytes), \bin2hex(Frame::encode(Frame::CODEC_JSON, $case['seq'], $case['method'], $body)));
    }

    /**
     * @return array<string, array{callable(string): string, string}>
     */
    public static function malformed(): array
    {
        return [
            'truncated header' => [static fn (string $f): string => \substr($f, 0, 11), 'truncated'],
            'bad CRC' => [static fn (string $f): string => $f ^ \str_pad("\0\0\0\0\0\0\xff", \strlen($f), "\0"), 'CRC'],
            'payload length changed' => [static fn (string $f): string => \substr_replace($f, "\xff", 2, 1), 'CRC'],
            'wrong version' => [static fn (string $f): string => self::withCrc("\x25" . \substr($f, 1)), 'version'],
            'no options' => [static fn (string $f): string => self::withCrc("\x13" . \substr($f, 1)), 'options'],
            'method past payload' => [static fn (string $f): string => \substr_replace($f, \pack('V', 9999), 16, 4), 'method length'],
            'short payload' => [static fn (string $f): string => \substr($f, 0, -1), 'payload'],
        ];
    }

    /**
     * @dataProvider malformed
     * @param callable(string): string $break
     */
    public function testRefusesMalformedFrames(callable $break, string $message): void
    {
        $frame = Frame::encode(Frame::CODEC_JSON, 5, 'Sender.Push', '{"fd":1,"data":"x"}');
        $this->expectException(ProtocolException::class);
        $this->expectExceptionMessageMatches('/' . \preg_quote($message, '/') . '/i');
        Frame::decode($break($frame));
    }

    public function testSequenceRange(): void
    {
        $this->expectException(\WsBridge\Exception\InvalidArgumentException::class);
        Frame::encode(Frame::CODEC_JSON, 1 << 32, 'Sender.Push', '{}');
    }

    private static function withCrc(string $frame): string
    {
        return \substr($frame, 0, 6) . \pack('V', \crc32(\substr($frame, 0, 6))) . \substr($frame, 10);
    }
}
