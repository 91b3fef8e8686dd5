<?php

declare(strict_types=1);

namespace WsBridge\Exception;

/**
 * Strict mode only: the push or disconnect found no open connection with
 * this fd (unknown, closed, or its send queue full). The lenient Sender
 * returns false instead.
 */
class NotDeliveredException extends WsBridgeException
{
    public function __construct(string $message, private readonly int $fd)
    {
        parent::__construct($message);
    }

    public function getFd(): int
    {
        return $this->fd;
    }
}
