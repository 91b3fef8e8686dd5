<?php

declare(strict_types=1);

namespace WsBridge\Exception;

/**
 * The wsbridge configuration (config/autoload/wsbridge.php, or what a
 * factory was given) is missing or wrong: no controller, an authorizer that
 * is not callable, a store of the wrong type, Hyperf's Sender absent.
 */
class ConfigurationException extends WsBridgeException
{
}
