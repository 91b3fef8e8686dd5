<?php

declare(strict_types=1);

namespace Chat;

/**
 * Who is behind each connection: a name and a room, kept in one small JSON
 * file per connection under $dir.
 *
 * A controller behind the bridge keeps nothing in memory between events: the
 * events of one connection may reach different PHP processes (here every
 * request of `php -S` starts afresh; under PHP-FPM or Hyperf they go to
 * different workers). The bridge itself knows the rooms while a connection is
 * open (groups), but onClose comes after the connection left them, so the
 * name and room to announce are read from here. In production this is Redis.
 */
final class Members
{
    public function __construct(private readonly string $dir)
    {
        if (!\is_dir($dir) && !@\mkdir($dir, 0700, true) && !\is_dir($dir)) {
            throw new \RuntimeException("cannot create the state directory {$dir}");
        }
    }

    /**
     * @param array{name: string, room: string} $member
     */
    public function put(int $node, int $fd, array $member): void
    {
        $file = $this->file($node, $fd);
        $tmp = $file . '.' . \getmypid() . '.tmp';
        if (\file_put_contents($tmp, \json_encode($member, \JSON_THROW_ON_ERROR | \JSON_UNESCAPED_UNICODE)) === false || !\rename($tmp, $file)) {
            throw new \RuntimeException("cannot write {$file}");
        }
    }

    /**
     * @return array{name: string, room: string}|null
     */
    public function get(int $node, int $fd): ?array
    {
        $json = @\file_get_contents($this->file($node, $fd));
        if ($json === false) {
            return null;
        }
        $member = \json_decode($json, true);
        return \is_array($member) && \is_string($member['name'] ?? null) && \is_string($member['room'] ?? null)
            ? ['name' => $member['name'], 'room' => $member['room']]
            : null;
    }

    /**
     * Forgets the connection and returns what was known of it.
     *
     * @return array{name: string, room: string}|null
     */
    public function remove(int $node, int $fd): ?array
    {
        $member = $this->get($node, $fd);
        @\unlink($this->file($node, $fd));
        return $member;
    }

    private function file(int $node, int $fd): string
    {
        return "{$this->dir}/{$node}-{$fd}.json";
    }
}
