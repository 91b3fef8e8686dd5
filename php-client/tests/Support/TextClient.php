<?php

declare(strict_types=1);

namespace WsBridge\Tests\Support;

/**
 * A WebSocket client written here in PHP (RFC 6455 over a plain socket),
 * for tests that send messages and handshake headers, which the gorilla
 * client (WsClient) does not: connect with headers (a Cookie), send masked
 * text frames, read the server's frames, close.
 */
final class TextClient
{
    /** @var resource */
    private $socket;
    private string $buffer = '';

    /**
     * @param array<string, string> $headers
     */
    public function __construct(string $url, array $headers = [])
    {
        $u = \parse_url($url);
        $socket = @\stream_socket_client("tcp://{$u['host']}:{$u['port']}", $errno, $errstr, 5);
        if ($socket === false) {
            throw new \RuntimeException("cannot connect to {$url}: {$errstr}");
        }
        \stream_set_timeout($socket, 10);
        $this->socket = $socket;
        $key = \base64_encode(\random_bytes(16));
        $lines = ['GET ' . ($u['path'] ?? '/') . (isset($u['query']) ? "?{$u['query']}" : '') . ' HTTP/1.1', "Host: {$u['host']}:{$u['port']}",
            'Upgrade: websocket', 'Connection: Upgrade', "Sec-WebSocket-Key: {$key}", 'Sec-WebSocket-Version: 13'];
        foreach ($headers as $name => $value) {
            $lines[] = "{$name}: {$value}";
        }
        \fwrite($socket, \implode("\r\n", $lines) . "\r\n\r\n");
        while (($end = \strpos($this->buffer, "\r\n\r\n")) === false) {
            $this->fill();
        }
        $head = \substr($this->buffer, 0, $end);
        $this->buffer = (string) \substr($this->buffer, $end + 4);
        if (!\str_starts_with($head, 'HTTP/1.1 101')) {
            throw new \RuntimeException("handshake refused: {$head}");
        }
    }

    public function send(string $text, int $opcode = 1): void
    {
        $mask = \random_bytes(4);
        $len = \strlen($text);
        $head = \chr(0x80 | $opcode);
        if ($len < 126) {
            $head .= \chr(0x80 | $len);
        } elseif ($len < 65536) {
            $head .= \chr(0x80 | 126) . \pack('n', $len);
        } else {
            $head .= \chr(0x80 | 127) . \pack('J', $len);
        }
        $masked = '';
        for ($i = 0; $i < $len; $i++) {
            $masked .= $text[$i] ^ $mask[$i % 4];
        }
        \fwrite($this->socket, $head . $mask . $masked);
    }

    /**
     * The next whole message: [opcode, data] (a close frame: [8, payload]).
     *
     * @return array{int, string}
     */
    public function receive(): array
    {
        $opcode = null;
        $data = '';
        do {
            $b = \unpack('C2', $this->take(2));
            $fin = ($b[1] & 0x80) !== 0;
            $op = $b[1] & 0x0F;
            $len = $b[2] & 0x7F;
            if ($len === 126) {
                $len = \unpack('n', $this->take(2))[1];
            } elseif ($len === 127) {
                $len = \unpack('J', $this->take(8))[1];
            }
            $payload = $len > 0 ? $this->take($len) : '';
            if ($op >= 8) {
                if ($op === 8) {
                    return [8, $payload];
                }
                continue; // ping, pong
            }
            $opcode ??= $op;
            $data .= $payload;
        } while (!$fin);
        return [$opcode, $data];
    }

    public function receiveText(): string
    {
        [$op, $data] = $this->receive();
        if ($op !== 1) {
            throw new \RuntimeException("expected a text message, got opcode {$op}: " . \bin2hex($data));
        }
        return $data;
    }

    public function close(): void
    {
        if (\is_resource($this->socket)) {
            $this->send(\pack('n', 1000), 8);
            @\fclose($this->socket);
        }
    }

    public function __destruct()
    {
        if (\is_resource($this->socket)) {
            @\fclose($this->socket);
        }
    }

    private function take(int $n): string
    {
        while (\strlen($this->buffer) < $n) {
            $this->fill();
        }
        $out = \substr($this->buffer, 0, $n);
        $this->buffer = (string) \substr($this->buffer, $n);
        return $out;
    }

    private function fill(): void
    {
        $chunk = \fread($this->socket, 65536);
        if ($chunk === false || $chunk === '') {
            $meta = \stream_get_meta_data($this->socket);
            throw new \RuntimeException($meta['timed_out'] ? 'no frame from the bridge within 10s' : 'the bridge closed the connection');
        }
        $this->buffer .= $chunk;
    }
}
