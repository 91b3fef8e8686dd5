<?php

declare(strict_types=1);

namespace WsBridge\Hyperf;

use Psr\Container\ContainerInterface;
use WsBridge\Exception\InvalidArgumentException;

/**
 * Reads the "wsbridge" key of Hyperf's configuration
 * (config/autoload/wsbridge.php, published from publish/wsbridge.php).
 *
 * @internal
 */
final class Config
{
    /** Hyperf\Contract\ConfigInterface, named as a string: Hyperf may be absent. */
    public const CONFIG_INTERFACE = 'Hyperf\Contract\ConfigInterface';

    private function __construct()
    {
    }

    /**
     * @return array<string, mixed> wsbridge.$section, [] when not set
     */
    public static function section(ContainerInterface $container, string $section): array
    {
        $all = $container->has(self::CONFIG_INTERFACE) ? $container->get(self::CONFIG_INTERFACE)->get('wsbridge', []) : [];
        $value = \is_array($all) ? ($all[$section] ?? []) : [];
        if (!\is_array($value)) {
            throw new InvalidArgumentException("wsbridge.{$section} must be an array");
        }
        return $value;
    }
}
