<?php

declare(strict_types=1);

namespace WsBridge\Exception;

/**
 * The events handler refused a request from the bridge before dispatching
 * anything. getStatus() is the HTTP status it answered with.
 */
class RequestRejectedException extends WsBridgeException
{
    public function __construct(string $message, private readonly int $status)
    {
        parent::__construct($message);
    }

    public function getStatus(): int
    {
        return $this->status;
    }
}
