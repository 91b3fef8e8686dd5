<?php

declare(strict_types=1);

namespace WsBridge\Exception;

/**
 * An events or auth request that is malformed or hostile: not JSON, too
 * deep, too large, wrong shapes, missing fields, unknown event types or
 * invalid fds. Answered with 400; nothing of the batch is dispatched.
 */
class InvalidRequestException extends RequestRejectedException
{
    public function __construct(string $message)
    {
        parent::__construct($message, 400);
    }
}
