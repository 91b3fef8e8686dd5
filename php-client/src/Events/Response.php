<?php

declare(strict_types=1);

namespace WsBridge\Events;

/**
 * The HTTP answer of the events handler, for the framework to send (or
 * emit() in plain PHP).
 */
final class Response
{
    /**
     * @param array<string, string> $headers
     */
    public function __construct(
        public readonly int $status,
        public readonly array $headers = [],
        public readonly string $body = '',
    ) {
    }

    public static function noContent(): self
    {
        return new self(204);
    }

    /**
     * @param array<string, mixed> $data
     */
    public static function json(int $status, array $data): self
    {
        return new self(
            $status,
            ['Content-Type' => 'application/json'],
            \json_encode($data, \JSON_THROW_ON_ERROR | \JSON_UNESCAPED_SLASHES | \JSON_UNESCAPED_UNICODE | \JSON_INVALID_UTF8_SUBSTITUTE),
        );
    }

    public static function error(int $status, string $message): self
    {
        return self::json($status, ['error' => $message]);
    }

    /**
     * Sends the answer with PHP's own functions (php -S, PHP-FPM, mod_php).
     */
    public function emit(): void
    {
        if (!\headers_sent()) {
            \http_response_code($this->status);
            foreach ($this->headers as $name => $value) {
                \header("{$name}: {$value}");
            }
        }
        echo $this->body;
    }
}
