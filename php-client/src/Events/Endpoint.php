<?php

declare(strict_types=1);

namespace WsBridge\Events;

/**
 * The events handler as a plain PHP endpoint (php -S, PHP-FPM, mod_php):
 * the body from php://input, the headers from $_SERVER.
 *
 *   // public/wsbridge-events.php
 *   Endpoint::serve(EventHandler::create(new ChatController(), Sender::create(), ['secret' => ...]));
 */
final class Endpoint
{
    private function __construct()
    {
    }

    /**
     * Handles the current request and sends the answer.
     */
    public static function serve(EventHandler $handler): Response
    {
        $response = self::handle($handler, $_SERVER);
        $response->emit();
        return $response;
    }

    /**
     * Handles the request that $server (a $_SERVER array) and $input
     * describe, without sending anything.
     *
     * @param array<string, mixed> $server
     */
    public static function handle(EventHandler $handler, array $server, string $input = 'php://input'): Response
    {
        if (($server['REQUEST_METHOD'] ?? '') !== 'POST') {
            return new Response(405, ['Allow' => 'POST', 'Content-Type' => 'application/json'], '{"error":"the bridge posts its events"}');
        }
        // One byte over the limit is enough for the handler to refuse it.
        $body = self::readBody($input, $handler->maxBodySize() + 1);
        if ($body === null) {
            return Response::error(400, 'cannot read the request body');
        }
        return $handler->handle($body, self::headers($server));
    }

    /**
     * The request headers in a $_SERVER array (HTTP_X_WSBRIDGE_KIND is
     * x-wsbridge-kind; CONTENT_TYPE and CONTENT_LENGTH as well).
     *
     * @param array<string, mixed> $server
     * @return array<string, string>
     */
    public static function headers(array $server): array
    {
        $out = [];
        foreach ($server as $key => $value) {
            if (!\is_string($value)) {
                continue;
            }
            $key = (string) $key;
            if (\str_starts_with($key, 'HTTP_')) {
                $out[\strtolower(\str_replace('_', '-', \substr($key, 5)))] = $value;
            } elseif ($key === 'CONTENT_TYPE' || $key === 'CONTENT_LENGTH') {
                $out[\strtolower(\str_replace('_', '-', $key))] = $value;
            }
        }
        return $out;
    }

    /**
     * Reads at most $limit bytes of $input.
     */
    private static function readBody(string $input, int $limit): ?string
    {
        $stream = @\fopen($input, 'rb');
        if ($stream === false) {
            return null;
        }
        try {
            $body = \stream_get_contents($stream, $limit);
            return $body === false ? null : $body;
        } finally {
            \fclose($stream);
        }
    }
}
