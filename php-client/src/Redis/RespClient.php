<?php

declare(strict_types=1);

namespace WsBridge\Redis;

/**
 * A minimal Redis client over RESP2 (tcp://host:port or unix:///path), for
 * the stores when neither the redis extension nor predis is installed. One
 * connection, opened on first use and again after a failure. Not for
 * coroutines that run at once: give each worker its own, or use the
 * extension's pooled clients.
 */
final class RespClient implements RedisClient
{
    /** @var resource|null */
    private $socket = null;

    public function __construct(
        private readonly string $address = 'tcp://127.0.0.1:6379',
        private readonly ?string $password = null,
        private readonly int $database = 0,
        private readonly float $timeout = 2.0,
    ) {
    }

    /**
     * From a URL: redis://[:password@]host[:port][/db] or unix:///path.
     */
    public static function fromUrl(string $url, float $timeout = 2.0): self
    {
        if (\str_starts_with($url, 'unix://')) {
            return new self($url, null, 0, $timeout);
        }
        $p = \parse_url($url);
        if ($p === false || !isset($p['host'])) {
            throw new RedisException("Redis URL \"{$url}\": want redis://[:password@]host[:port][/db]");
        }
        $password = isset($p['pass']) ? \urldecode($p['pass']) : (isset($p['user']) ? \urldecode($p['user']) : null);
        return new self(
            'tcp://' . $p['host'] . ':' . ($p['port'] ?? 6379),
            $password,
            (int) \ltrim($p['path'] ?? '0', '/'),
            $timeout,
        );
    }

    public function command(string ...$args): mixed
    {
        try {
            $this->connect();
            return $this->roundTrip($args);
        } catch (RedisException $e) {
            if ($e->getCode() !== 1) {
                $this->close(); // a transport failure: the next command reconnects
            }
            throw $e;
        }
    }

    public function close(): void
    {
        if ($this->socket !== null) {
            @\fclose($this->socket);
            $this->socket = null;
        }
    }

    private function connect(): void
    {
        if ($this->socket !== null) {
            return;
        }
        $errno = 0;
        $errstr = '';
        $socket = @\stream_socket_client($this->address, $errno, $errstr, $this->timeout);
        if ($socket === false) {
            throw new RedisException("cannot connect to Redis at {$this->address}: {$errstr} ({$errno})");
        }
        $sec = (int) $this->timeout;
        \stream_set_timeout($socket, $sec, (int) (($this->timeout - $sec) * 1e6));
        $this->socket = $socket;
        if ($this->password !== null && $this->password !== '') {
            $this->roundTrip(['AUTH', $this->password]);
        }
        if ($this->database !== 0) {
            $this->roundTrip(['SELECT', (string) $this->database]);
        }
    }

    /**
     * @param list<string> $args
     */
    private function roundTrip(array $args): mixed
    {
        $out = '*' . \count($args) . "\r\n";
        foreach ($args as $a) {
            $out .= '$' . \strlen($a) . "\r\n" . $a . "\r\n";
        }
        for ($off = 0, $len = \strlen($out); $off < $len; $off += $n) {
            $n = @\fwrite($this->socket, \substr($out, $off));
            if ($n === false || $n === 0) {
                throw new RedisException("write to Redis at {$this->address} failed");
            }
        }
        return $this->reply();
    }

    private function reply(): mixed
    {
        $line = \fgets($this->socket);
        if ($line === false || !\str_ends_with($line, "\r\n")) {
            throw new RedisException("no reply from Redis at {$this->address}");
        }
        $type = $line[0];
        $rest = \substr($line, 1, -2);
        switch ($type) {
            case '+':
                return $rest;
            case '-':
                throw new RedisException("Redis answered: {$rest}", 1);
            case ':':
                return (int) $rest;
            case '$':
                $n = (int) $rest;
                if ($n < 0) {
                    return null;
                }
                $data = '';
                while (\strlen($data) < $n + 2) {
                    $chunk = \fread($this->socket, $n + 2 - \strlen($data));
                    if ($chunk === false || $chunk === '') {
                        throw new RedisException("Redis at {$this->address} closed the connection");
                    }
                    $data .= $chunk;
                }
                return \substr($data, 0, $n);
            case '*':
                $n = (int) $rest;
                if ($n < 0) {
                    return null;
                }
                $list = [];
                for ($i = 0; $i < $n; $i++) {
                    $list[] = $this->reply();
                }
                return $list;
        }
        throw new RedisException("malformed reply from Redis at {$this->address}");
    }
}
