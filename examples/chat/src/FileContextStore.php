<?php

declare(strict_types=1);

namespace Chat;

use WsBridge\Context\ContextStore;

/**
 * A shared connection context for the demo: one small JSON file per
 * connection under $dir.
 *
 * A controller behind the bridge keeps nothing in memory between events:
 * every request of `php -S` starts afresh, and under PHP-FPM or Hyperf the
 * events of one connection may reach different workers. So the context the
 * controller sets in onOpen and reads in onMessage and onClose lives outside
 * the process: here in files, in production in Redis
 * (WsBridge\Context\RedisContextStore, the same interface).
 */
final class FileContextStore implements ContextStore
{
    public function __construct(private readonly string $dir)
    {
        if (!\is_dir($dir) && !@\mkdir($dir, 0700, true) && !\is_dir($dir)) {
            throw new \RuntimeException("cannot create the state directory {$dir}");
        }
    }

    public function get(int $fd, string $key): mixed
    {
        return $this->all($fd)[$key] ?? null;
    }

    public function has(int $fd, string $key): bool
    {
        return isset($this->all($fd)[$key]);
    }

    public function set(int $fd, string $key, mixed $value): void
    {
        $this->write($fd, [$key => $value] + $this->all($fd));
    }

    public function delete(int $fd, string $key): void
    {
        $values = $this->all($fd);
        unset($values[$key]);
        $this->write($fd, $values);
    }

    public function all(int $fd): array
    {
        $json = @\file_get_contents($this->file($fd));
        $values = $json === false ? null : \json_decode($json, true);
        return \is_array($values) ? $values : [];
    }

    public function release(int $fd): void
    {
        @\unlink($this->file($fd));
    }

    /**
     * @param array<string, mixed> $values
     */
    private function write(int $fd, array $values): void
    {
        $file = $this->file($fd);
        $tmp = $file . '.' . \getmypid() . '.tmp';
        if (\file_put_contents($tmp, \json_encode($values, \JSON_THROW_ON_ERROR | \JSON_UNESCAPED_UNICODE)) === false || !\rename($tmp, $file)) {
            throw new \RuntimeException("cannot write {$file}");
        }
    }

    private function file(int $fd): string
    {
        return "{$this->dir}/{$fd}.json";
    }
}
