<?php

declare(strict_types=1);

namespace WsBridge\Tests\Events;

use PHPUnit\Framework\TestCase;
use WsBridge\Events\Signature;
use WsBridge\Exception\SignatureException;

/**
 * The signature of docs/PROTOCOL.md: "v1=" and the lowercase hex
 * HMAC-SHA256 of "<timestamp>.<body>". The golden values were computed with
 * `openssl dgst -sha256 -hmac` and agree with hash_hmac; the Go side signs
 * with the same definition and can check itself against these vectors.
 */
final class SignatureTest extends TestCase
{
    public const SECRET = 'wsbridge-test-secret';
    public const TIMESTAMP = 1764050000;

    /** The batch of docs/PROTOCOL.md, compact. */
    public const BATCH = '{"node":0,"events":[{"type":"open","fd":7,"seq":1,"time":1764050000123,"path":"/","query":"room=1&token=abc","headers":{"Host":["example.com"]},"remote_addr":"203.0.113.9:51234","subprotocol":"","user":"42","groups":["vip"]},{"type":"message","fd":7,"seq":2,"time":1764050000200,"opcode":1,"data":"hello"},{"type":"message","fd":7,"seq":3,"time":1764050000201,"opcode":2,"data":"AAEC/w==","encoding":"base64"},{"type":"close","fd":7,"seq":4,"time":1764050000300,"code":1000,"reason":"","by":"client"}]}';

    /**
     * @return array<string, array{string, string, string}>
     */
    public static function goldenSignatures(): array
    {
        return [
            'empty batch' => [self::SECRET, '{"node":0,"events":[]}', 'v1=60de377e844b8f1f38026669f175350f1c7900096a047e380e896178a3abcd01'],
            'the protocol example' => [self::SECRET, self::BATCH, 'v1=3fe93e59ad52c06bcf504a9d83b00676c2ffd510fd1117475d4d607b4cb9d4eb'],
            'auth request' => [self::SECRET, '{"node":3,"path":"/chat","query":"token=caf%C3%A9","headers":{"Host":["example.com"]},"remote_addr":"[2001:db8::1]:443"}', 'v1=314b431239ff4094a65872b6ab5eefd7dbed148c7ea5f5ad0c959d4767b1c31a'],
            'UTF-8 secret' => ["another secret, \u{fc}n\u{ef}code", self::BATCH, 'v1=d4522b4792c38f6a50517ef87e3fa128067470511f5a51bd28921659a18ba344'],
        ];
    }

    /**
     * @dataProvider goldenSignatures
     */
    public function testGoldenSignatures(string $secret, string $body, string $want): void
    {
        self::assertSame('v1=' . \hash_hmac('sha256', self::TIMESTAMP . '.' . $body, $secret), $want, 'hash_hmac is the reference');
        self::assertSame($want, Signature::sign($secret, self::TIMESTAMP, $body));
        self::assertSame($want, Signature::sign($secret, (string) self::TIMESTAMP, $body));
        Signature::verify([$secret], $body, (string) self::TIMESTAMP, $want, self::TIMESTAMP);
        $this->addToAssertionCount(1);
    }

    public function testFreshnessBoundaries(): void
    {
        $sig = Signature::sign(self::SECRET, self::TIMESTAMP, 'x');
        foreach ([-300, 0, 300] as $skew) {
            Signature::verify([self::SECRET], 'x', (string) self::TIMESTAMP, $sig, self::TIMESTAMP + $skew);
        }
        $this->addToAssertionCount(3);
        foreach ([-301, 301, 86400] as $skew) {
            try {
                Signature::verify([self::SECRET], 'x', (string) self::TIMESTAMP, $sig, self::TIMESTAMP + $skew);
                self::fail("a request {$skew} s away was accepted");
            } catch (SignatureException $e) {
                self::assertSame(401, $e->getStatus());
                self::assertStringContainsString('stale', $e->getMessage());
            }
        }
        // A tolerance of its own.
        Signature::verify([self::SECRET], 'x', (string) self::TIMESTAMP, $sig, self::TIMESTAMP + 1000, 1000);
    }

    /**
     * @return array<string, array{?string, ?string, string, string}>
     */
    public static function refusals(): array
    {
        $good = Signature::sign(self::SECRET, self::TIMESTAMP, 'body');
        return [
            'no signature' => [(string) self::TIMESTAMP, null, 'body', 'not signed'],
            'empty signature' => [(string) self::TIMESTAMP, '', 'body', 'not signed'],
            'no timestamp' => [null, $good, 'body', 'no X-Wsbridge-Timestamp'],
            'timestamp not a number' => ['17640500OO', $good, 'body', 'malformed X-Wsbridge-Timestamp'],
            'negative timestamp' => ['-1764050000', $good, 'body', 'malformed X-Wsbridge-Timestamp'],
            'timestamp with a newline' => [self::TIMESTAMP . "\n", $good, 'body', 'malformed X-Wsbridge-Timestamp'],
            'another scheme' => [(string) self::TIMESTAMP, 'v2=' . \substr($good, 3), 'body', 'malformed X-Wsbridge-Signature'],
            'uppercase hex' => [(string) self::TIMESTAMP, \strtoupper($good), 'body', 'malformed X-Wsbridge-Signature'],
            'short' => [(string) self::TIMESTAMP, \substr($good, 0, -2), 'body', 'malformed X-Wsbridge-Signature'],
            'two signatures' => [(string) self::TIMESTAMP, $good . ', ' . $good, 'body', 'malformed X-Wsbridge-Signature'],
            'changed body' => [(string) self::TIMESTAMP, $good, 'body ', 'signature mismatch'],
            'other timestamp' => [(string) (self::TIMESTAMP + 1), $good, 'body', 'signature mismatch'],
            'wrong secret' => [(string) self::TIMESTAMP, Signature::sign('not the secret', self::TIMESTAMP, 'body'), 'body', 'signature mismatch'],
        ];
    }

    /**
     * @dataProvider refusals
     */
    public function testRefusals(?string $timestamp, ?string $signature, string $body, string $why): void
    {
        try {
            Signature::verify([self::SECRET], $body, $timestamp, $signature, self::TIMESTAMP);
            self::fail('accepted');
        } catch (SignatureException $e) {
            self::assertSame(401, $e->getStatus());
            self::assertStringContainsString($why, $e->getMessage());
        }
    }

    public function testRotationAcceptsEitherSecret(): void
    {
        $old = Signature::sign('old secret', self::TIMESTAMP, 'b');
        $new = Signature::sign('new secret', self::TIMESTAMP, 'b');
        Signature::verify(['new secret', 'old secret'], 'b', (string) self::TIMESTAMP, $old, self::TIMESTAMP);
        Signature::verify(['new secret', 'old secret'], 'b', (string) self::TIMESTAMP, $new, self::TIMESTAMP);
        $this->expectException(SignatureException::class);
        Signature::verify(['new secret'], 'b', (string) self::TIMESTAMP, $old, self::TIMESTAMP);
    }
}
