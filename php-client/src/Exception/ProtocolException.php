<?php

declare(strict_types=1);

namespace WsBridge\Exception;

/**
 * A frame from the bridge broke the goridge protocol: bad CRC, truncated,
 * or a reply whose sequence number does not match the request. The
 * connection is dropped; the answer is never guessed.
 */
class ProtocolException extends WsBridgeException
{
}
