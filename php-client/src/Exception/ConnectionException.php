<?php

declare(strict_types=1);

namespace WsBridge\Exception;

/**
 * The bridge could not be reached, or the connection broke, within the
 * configured timeouts and retries. Carries the address that was tried.
 */
class ConnectionException extends WsBridgeException
{
    public function __construct(string $message, private readonly string $address, ?\Throwable $previous = null)
    {
        parent::__construct($message, 0, $previous);
    }

    public function getAddress(): string
    {
        return $this->address;
    }
}
