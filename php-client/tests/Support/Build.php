<?php

declare(strict_types=1);

namespace WsBridge\Tests\Support;

/**
 * The Go programs the end-to-end tests run: the real wsbridge binary and a
 * gorilla WebSocket client. `make test` builds them and passes their paths
 * in WSBRIDGE_BIN and WSBRIDGE_WSCLIENT; without those, they are built here
 * once (Go must be installed).
 */
final class Build
{
    /** @var array<string, string> */
    private static array $built = [];

    public static function bridge(): string
    {
        return self::program('WSBRIDGE_BIN', './cmd/wsbridge');
    }

    public static function wsclient(): string
    {
        return self::program('WSBRIDGE_WSCLIENT', './tests/wsclient');
    }

    private static function program(string $env, string $package): string
    {
        $path = \getenv($env);
        if (\is_string($path) && $path !== '') {
            if (!\is_executable($path)) {
                throw new \RuntimeException("{$env}={$path} is not an executable");
            }
            return $path;
        }
        if (isset(self::$built[$package])) {
            return self::$built[$package];
        }
        $root = \dirname(__DIR__, 3);
        $out = \sys_get_temp_dir() . '/wsbridge-phptest-' . \getmypid() . '-' . \basename($package);
        $cmd = 'cd ' . \escapeshellarg($root) . ' && go build -o ' . \escapeshellarg($out) . ' ' . \escapeshellarg($package) . ' 2>&1';
        \exec($cmd, $output, $code);
        if ($code !== 0) {
            throw new \RuntimeException("cannot build {$package} (set {$env} or install Go): " . \implode("\n", $output));
        }
        \register_shutdown_function(static fn () => @\unlink($out));
        return self::$built[$package] = $out;
    }
}
