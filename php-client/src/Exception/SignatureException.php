<?php

declare(strict_types=1);

namespace WsBridge\Exception;

/**
 * A request whose signature is missing, malformed or wrong, or whose
 * timestamp is too far from this clock (a replay). Answered with 401.
 */
class SignatureException extends RequestRejectedException
{
    public function __construct(string $message)
    {
        parent::__construct($message, 401);
    }
}
