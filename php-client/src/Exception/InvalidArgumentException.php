<?php

declare(strict_types=1);

namespace WsBridge\Exception;

/**
 * A wrong argument given to the client: a bad address, option, fd list,
 * message shape or data type. Thrown before anything is sent.
 */
class InvalidArgumentException extends WsBridgeException
{
}
