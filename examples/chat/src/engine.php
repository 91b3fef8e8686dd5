<?php

declare(strict_types=1);

/*
 * The two classes of hyperf/engine the chat's controller pushes with, as a
 * Hyperf controller does (docs/zh-cn/websocket-server.md):
 *
 *   (new Response($server))->init($frame)->push(new Frame(payloadData: '...'));
 *
 * In a Hyperf application they are hyperf/engine's own. This demo runs in
 * plain PHP without Hyperf, so when they are missing these stand-ins are
 * declared, with the same constructor and the same behaviour behind the
 * bridge: $server is a Swoole\WebSocket\Server (WsBridge\Events\Server), and
 * the frame's payload, opcode and FIN go to $server->push().
 */

namespace Hyperf\Engine\WebSocket;

if (!\class_exists(Frame::class)) {
    class Frame
    {
        public function __construct(
            protected bool $fin = true,
            protected bool $rsv1 = false,
            protected bool $rsv2 = false,
            protected bool $rsv3 = false,
            protected int $opcode = 1,
            protected int $payloadLength = 0,
            protected string $maskingKey = '',
            protected mixed $payloadData = '',
        ) {
        }

        public function getOpcode(): int
        {
            return $this->opcode;
        }

        public function getFin(): bool
        {
            return $this->fin;
        }

        public function getPayloadData(): string
        {
            return (string) $this->payloadData;
        }
    }
}

if (!\class_exists(Response::class)) {
    class Response
    {
        protected int $fd = 0;

        public function __construct(protected mixed $connection)
        {
        }

        public function init(mixed $frame): static
        {
            $this->fd = \is_int($frame) ? $frame : (int) $frame->fd;
            return $this;
        }

        public function push(Frame $frame): bool
        {
            if (!$this->connection instanceof \Swoole\WebSocket\Server) {
                throw new \InvalidArgumentException('The websocket connection is invalid.');
            }
            $this->connection->push($this->fd, $frame->getPayloadData(), $frame->getOpcode(), $frame->getFin() ? 1 : 0);
            return true;
        }

        public function getFd(): int
        {
            return $this->fd;
        }

        public function close(): bool
        {
            return $this->connection->disconnect($this->fd);
        }
    }
}
