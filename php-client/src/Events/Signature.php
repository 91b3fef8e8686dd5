<?php

declare(strict_types=1);

namespace WsBridge\Events;

use WsBridge\Exception\SignatureException;

/**
 * The signature of the bridge's requests (docs/PROTOCOL.md, "Events"):
 *
 *   X-Wsbridge-Timestamp: <unix seconds>
 *   X-Wsbridge-Signature: v1=<lowercase hex HMAC-SHA256 of "<timestamp>.<body>">
 *
 * keyed with WSBRIDGE_EVENTS_SECRET. Verification compares in constant
 * time over the raw body and refuses a timestamp more than the tolerance
 * (300 s) away from this clock.
 */
final class Signature
{
    public const PREFIX = 'v1=';
    public const DEFAULT_TOLERANCE = 300;

    private function __construct()
    {
    }

    /**
     * The X-Wsbridge-Signature value for $body signed at $timestamp.
     */
    public static function sign(string $secret, int|string $timestamp, string $body): string
    {
        return self::PREFIX . \hash_hmac('sha256', $timestamp . '.' . $body, $secret);
    }

    /**
     * Checks a request's signature against every secret in $secrets (more
     * than one while a secret is being rotated).
     *
     * @param non-empty-list<string> $secrets
     * @throws SignatureException missing, malformed or wrong signature; missing, malformed or stale timestamp
     */
    public static function verify(array $secrets, string $body, ?string $timestamp, ?string $signature, int $now, int $tolerance = self::DEFAULT_TOLERANCE): void
    {
        if ($signature === null || $signature === '') {
            throw new SignatureException('the request is not signed (no X-Wsbridge-Signature) and a secret is configured');
        }
        if ($timestamp === null || $timestamp === '') {
            throw new SignatureException('the request has no X-Wsbridge-Timestamp');
        }
        if (\preg_match('/^[0-9]{1,12}$/D', $timestamp) !== 1) {
            throw new SignatureException('malformed X-Wsbridge-Timestamp');
        }
        if (\preg_match('/^v1=[0-9a-f]{64}$/D', $signature) !== 1) {
            throw new SignatureException('malformed X-Wsbridge-Signature: want v1=<64 lowercase hex digits>');
        }
        $valid = false;
        foreach ($secrets as $secret) {
            // No early exit: the time taken does not tell which secret matched.
            $valid = \hash_equals(self::sign($secret, $timestamp, $body), $signature) || $valid;
        }
        if (!$valid) {
            throw new SignatureException('signature mismatch: the body was changed or the secret differs');
        }
        $skew = $now - (int) $timestamp;
        if (\abs($skew) > $tolerance) {
            throw new SignatureException("stale request: its timestamp is {$skew} s away from this clock (at most {$tolerance} s allowed)");
        }
    }
}
