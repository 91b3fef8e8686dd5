<?php

declare(strict_types=1);

namespace WsBridge\Events;

/**
 * One event of a batch from the bridge, checked and decoded (docs/PROTOCOL.md,
 * "Event batches"). Fields that do not belong to the event's type keep their
 * defaults.
 */
final class Event
{
    public const OPEN = 'open';
    public const MESSAGE = 'message';
    public const CLOSE = 'close';

    public const OPCODE_TEXT = 1;
    public const OPCODE_BINARY = 2;

    /**
     * @param array<string, list<string>> $headers open: the handshake's headers under their canonical names
     * @param list<string>                $groups  open: the groups the authorization bound
     */
    public function __construct(
        /** open, message or close */
        public readonly string $type,
        /** the node that sent the batch */
        public readonly int $node,
        public readonly int $fd,
        /** this fd's event number, from 1 (the open event) */
        public readonly int $seq,
        /** unix milliseconds when the bridge saw the event */
        public readonly int $time,
        public readonly string $path = '',
        /** the raw query string */
        public readonly string $query = '',
        public readonly array $headers = [],
        /** host:port, or [ipv6]:port */
        public readonly string $remoteAddr = '',
        public readonly string $subprotocol = '',
        public readonly ?string $user = null,
        public readonly array $groups = [],
        /** message: 1 text, 2 binary */
        public readonly int $opcode = 0,
        /** message: the payload, base64 already decoded */
        public readonly string $data = '',
        /** close: the close code (1006: ended without a close frame) */
        public readonly int $code = 0,
        public readonly string $reason = '',
        /** close: client or server */
        public readonly string $by = '',
    ) {
    }

    public function describe(): string
    {
        return "{$this->type} event of fd {$this->fd} (seq {$this->seq})";
    }
}
