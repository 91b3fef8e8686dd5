<?php

declare(strict_types=1);

namespace WsBridge\Exception;

/**
 * The bridge refused a call. getErrorCode() is the bridge's stable code
 * (invalid_fd, invalid_opcode, too_large, invalid_utf8, invalid_close_code,
 * invalid_name, too_many_groups, bad_request, shutting_down, internal,
 * node_unreachable), or '' for errors without one (an unknown method).
 */
class ServiceException extends WsBridgeException
{
    public function __construct(string $message, private readonly string $errorCode = '')
    {
        parent::__construct($message);
    }

    public function getErrorCode(): string
    {
        return $this->errorCode;
    }

    /**
     * Reads the bridge's "code: message" error text.
     */
    public static function fromWire(string $text): self
    {
        if (preg_match('/^([a-z][a-z0-9_]*): (.*)$/s', $text, $m) === 1) {
            return new self($text, $m[1]);
        }
        return new self($text);
    }
}
