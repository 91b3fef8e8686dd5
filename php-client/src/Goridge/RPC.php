<?php

declare(strict_types=1);

namespace WsBridge\Goridge;

use WsBridge\Exception\ConnectionException;
use WsBridge\Exception\InvalidArgumentException;
use WsBridge\Exception\PartialWriteException;
use WsBridge\Exception\ProtocolException;
use WsBridge\Exception\ServiceException;
use WsBridge\Exception\WsBridgeException;

/**
 * goridge v3 RPC over one persistent connection, JSON codec.
 *
 * A call that cannot be sent (the bridge is down, or restarted since the
 * last call) reconnects and retries, a bounded number of times with a
 * doubling delay. Once a request is sent it is never sent again: a push is
 * not idempotent, so a connection lost while waiting for the reply is an
 * exception, not a retry. Every reply's sequence number is checked.
 */
final class RPC implements RPCInterface
{
    private int $seq = 0;

    /** The bridge's default rpc-max-frame-size (WSBRIDGE_RPC_MAX_FRAME_SIZE): 32 MiB. */
    public const DEFAULT_MAX_REQUEST_SIZE = 32 << 20;

    public function __construct(
        private readonly Connection $connection,
        private readonly int $retries = 2,
        private readonly float $retryDelay = 0.05,
        private readonly int $maxRequestSize = self::DEFAULT_MAX_REQUEST_SIZE,
    ) {
        if ($retries < 0) {
            throw new InvalidArgumentException('retries must not be negative');
        }
    }

    /**
     * max_request_size is the bridge's rpc-max-frame-size: a request whose
     * payload (method name and body) is larger is refused here, before it is
     * sent, with ServiceException "too_large".
     *
     * @param array{connect_timeout?: float, read_timeout?: float, retries?: int, retry_delay?: float, max_frame_size?: int, max_request_size?: int} $options
     */
    public static function create(string $address = 'tcp://127.0.0.1:6001', array $options = []): self
    {
        return new self(
            new Connection(
                $address,
                (float) ($options['connect_timeout'] ?? 1.0),
                (float) ($options['read_timeout'] ?? 5.0),
                (int) ($options['max_frame_size'] ?? 64 << 20),
            ),
            (int) ($options['retries'] ?? 2),
            (float) ($options['retry_delay'] ?? 0.05),
            (int) ($options['max_request_size'] ?? self::DEFAULT_MAX_REQUEST_SIZE),
        );
    }

    public function address(): string
    {
        return $this->connection->address();
    }

    /**
     * Calls $method (e.g. "Sender.Push") with $args and returns the decoded
     * JSON reply.
     *
     * @throws ConnectionException the bridge is unreachable (after the retries) or the connection broke mid-call
     * @throws ProtocolException   a malformed reply or one with the wrong sequence number
     * @throws ServiceException    the bridge refused the call
     */
    public function call(string $method, mixed $args): mixed
    {
        try {
            $body = \json_encode($args, \JSON_THROW_ON_ERROR | \JSON_UNESCAPED_UNICODE | \JSON_UNESCAPED_SLASHES);
        } catch (\JsonException $e) {
            throw new InvalidArgumentException("cannot encode the arguments of {$method} as JSON: {$e->getMessage()}", 0, $e);
        }
        $size = \strlen($method) + \strlen($body);
        if ($size > $this->maxRequestSize) {
            throw new ServiceException(
                "too_large: the {$method} request of {$size} bytes is over the bridge's frame limit of "
                . "{$this->maxRequestSize} bytes (rpc-max-frame-size; max_request_size here)",
                'too_large',
            );
        }
        $seq = $this->send($method, $body);
        $reply = $this->connection->receive();
        if (($reply['flags'] & Frame::ERROR) !== 0 && $reply['seq'] === 0) {
            // A connection-level refusal (too many connections, bad frame).
            $this->connection->close();
            throw ServiceException::fromWire($reply['body']);
        }
        if ($reply['seq'] !== $seq) {
            $this->connection->close();
            throw new ProtocolException("reply sequence {$reply['seq']} does not match request {$seq} ({$method})");
        }
        if (($reply['flags'] & Frame::ERROR) !== 0) {
            throw ServiceException::fromWire($reply['body']);
        }
        if (($reply['flags'] & Frame::CODEC_JSON) === 0) {
            $this->connection->close();
            throw new ProtocolException(\sprintf('reply to %s is not JSON (flags 0x%02x)', $method, $reply['flags']));
        }
        try {
            return \json_decode($reply['body'], true, 512, \JSON_THROW_ON_ERROR);
        } catch (\JsonException $e) {
            $this->connection->close();
            throw new ProtocolException("reply to {$method} is not valid JSON: {$e->getMessage()}", 0, $e);
        }
    }

    public function close(): void
    {
        $this->connection->close();
    }

    /**
     * After a partial write: the bridge's answer, if it sent one before
     * closing (a refused frame), as a ServiceException; else the write's
     * failure. Never a retry.
     *
     * @throws ServiceException|PartialWriteException
     */
    private function refusal(PartialWriteException $e): never
    {
        try {
            $reply = $this->connection->receive();
        } catch (WsBridgeException) {
            $this->connection->close();
            throw $e;
        }
        $this->connection->close();
        if (($reply['flags'] & Frame::ERROR) !== 0) {
            throw ServiceException::fromWire($reply['body']);
        }
        throw $e;
    }

    /**
     * Sends one request, reconnecting first when needed; returns its sequence.
     *
     * @throws ConnectionException
     */
    private function send(string $method, string $body): int
    {
        for ($attempt = 0;; $attempt++) {
            try {
                if (!$this->connection->isConnected() || $this->connection->peerClosed()) {
                    $this->connection->connect();
                }
                $this->seq = $this->seq >= Frame::MAX_SEQ ? 1 : $this->seq + 1;
                $this->connection->send(Frame::encode(Frame::CODEC_JSON, $this->seq, $method, $body));
                return $this->seq;
            } catch (PartialWriteException $e) {
                $this->refusal($e);
            } catch (ConnectionException $e) {
                if ($attempt >= $this->retries) {
                    throw new ConnectionException(
                        "the bridge at {$this->connection->address()} is unreachable after " . ($attempt + 1) . " attempts: {$e->getMessage()}",
                        $this->connection->address(),
                        $e,
                    );
                }
                \usleep((int) ($this->retryDelay * (2 ** $attempt) * 1e6));
            }
        }
    }
}
