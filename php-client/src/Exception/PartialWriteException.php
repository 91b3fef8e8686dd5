<?php

declare(strict_types=1);

namespace WsBridge\Exception;

/**
 * The connection broke after the bridge had taken part of a request: the
 * call is not sent again (a push is not idempotent, and a frame the bridge
 * refused would be refused again).
 */
class PartialWriteException extends ConnectionException
{
}
