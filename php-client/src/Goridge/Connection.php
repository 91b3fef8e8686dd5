<?php

declare(strict_types=1);

namespace WsBridge\Goridge;

use WsBridge\Exception\ConnectionException;
use WsBridge\Exception\PartialWriteException;
use WsBridge\Exception\InvalidArgumentException;
use WsBridge\Exception\ProtocolException;

/**
 * One socket to the bridge (tcp://host:port or unix:///path), with connect
 * and read timeouts. It knows frames, not calls: see RPC.
 */
final class Connection
{
    /** @var resource|null */
    private $socket = null;

    public function __construct(
        private readonly string $address,
        private readonly float $connectTimeout = 1.0,
        private readonly float $readTimeout = 5.0,
        private readonly int $maxFrameSize = 64 << 20,
    ) {
        if (!\preg_match('#^(tcp://[^/]+:\d+|unix:///?.+)$#', $address)) {
            throw new InvalidArgumentException("bridge address \"{$address}\": want tcp://host:port or unix:///path.sock");
        }
    }

    public function address(): string
    {
        return $this->address;
    }

    public function isConnected(): bool
    {
        return $this->socket !== null;
    }

    /**
     * @throws ConnectionException
     */
    public function connect(): void
    {
        $this->close();
        $context = \stream_context_create(['socket' => ['tcp_nodelay' => true]]);
        $errno = 0;
        $errstr = '';
        $socket = @\stream_socket_client($this->address, $errno, $errstr, $this->connectTimeout, \STREAM_CLIENT_CONNECT, $context);
        if ($socket === false) {
            throw new ConnectionException("cannot connect to the bridge at {$this->address}: {$errstr} ({$errno})", $this->address);
        }
        $sec = (int) $this->readTimeout;
        \stream_set_timeout($socket, $sec, (int) (($this->readTimeout - $sec) * 1e6));
        $this->socket = $socket;
    }

    /**
     * Reports whether the peer has closed a connection that is idle between
     * calls (a bridge restart leaves such a socket behind); it reads nothing
     * that a call would need.
     */
    public function peerClosed(): bool
    {
        if ($this->socket === null) {
            return true;
        }
        $r = [$this->socket];
        $w = $e = null;
        if (@\stream_select($r, $w, $e, 0) !== 1) {
            return false; // nothing to read: alive and idle
        }
        // Readable while idle means EOF or junk: either way, start afresh.
        return true;
    }

    /**
     * Writes a whole frame. A write that fails before its first byte closes
     * the connection (the call may be sent again on a new one); one that
     * fails after the bridge has taken part of the frame keeps the socket
     * open for receive() to read the bridge's refusal, if it sent one, and
     * throws PartialWriteException: such a frame is never sent again.
     *
     * @throws ConnectionException|PartialWriteException
     */
    public function send(string $bytes): void
    {
        $socket = $this->socketOrFail();
        $len = \strlen($bytes);
        for ($off = 0; $off < $len; $off += $n) {
            $n = @\fwrite($socket, $off === 0 ? $bytes : \substr($bytes, $off, 1 << 20));
            if ($n === false || $n === 0) {
                if ($off === 0) {
                    $this->close();
                    throw new ConnectionException("write to the bridge at {$this->address} failed", $this->address);
                }
                throw new PartialWriteException(
                    "the bridge at {$this->address} stopped reading after {$off} of {$len} bytes of a request",
                    $this->address,
                );
            }
        }
    }

    /**
     * Reads one RPC frame.
     *
     * @return array{flags: int, seq: int, method: string, body: string}
     * @throws ConnectionException|ProtocolException
     */
    public function receive(): array
    {
        try {
            $h = Frame::decodeHeader($this->read(Frame::RPC_HEADER_SIZE));
        } catch (ProtocolException $e) {
            $this->close();
            throw $e;
        }
        if ($h['payloadLen'] > $this->maxFrameSize) {
            $this->close();
            throw new ProtocolException("reply frame of {$h['payloadLen']} bytes is over the limit of {$this->maxFrameSize}");
        }
        $payload = $h['payloadLen'] > 0 ? $this->read($h['payloadLen']) : '';
        return [
            'flags' => $h['flags'],
            'seq' => $h['seq'],
            'method' => \substr($payload, 0, $h['methodLen']),
            'body' => \substr($payload, $h['methodLen']),
        ];
    }

    public function close(): void
    {
        if ($this->socket !== null) {
            @\fclose($this->socket);
            $this->socket = null;
        }
    }

    /**
     * @throws ConnectionException
     */
    private function read(int $len): string
    {
        $socket = $this->socketOrFail();
        $buf = '';
        while (\strlen($buf) < $len) {
            $chunk = @\fread($socket, $len - \strlen($buf));
            if ($chunk === false || $chunk === '') {
                $meta = \stream_get_meta_data($socket);
                $this->close();
                if ($meta['timed_out']) {
                    throw new ConnectionException("no reply from the bridge at {$this->address} within {$this->readTimeout}s", $this->address);
                }
                throw new ConnectionException("the bridge at {$this->address} closed the connection", $this->address);
            }
            $buf .= $chunk;
        }
        return $buf;
    }

    /**
     * @return resource
     * @throws ConnectionException
     */
    private function socketOrFail()
    {
        if ($this->socket === null) {
            throw new ConnectionException("not connected to the bridge at {$this->address}", $this->address);
        }
        return $this->socket;
    }
}
