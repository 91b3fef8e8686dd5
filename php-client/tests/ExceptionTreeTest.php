<?php

declare(strict_types=1);

namespace WsBridge\Tests;

use PHPUnit\Framework\TestCase;
use WsBridge\Exception\WsBridgeException;

/**
 * Every exception the client throws extends WsBridgeException, as the
 * README documents: every class instantiated as "new ...Exception(" or
 * "new ...Error(" in src/ resolves, through the file's namespace and use
 * statements, to a subclass of it. Hyperf's own InvalidMethodException is
 * the one exception (Hyperf's contract for a method Sender does not proxy).
 */
final class ExceptionTreeTest extends TestCase
{
    private const HYPERFS_OWN = ['Hyperf\WebSocketServer\Exception\InvalidMethodException'];

    public function testEveryThrownClassIsAWsBridgeException(): void
    {
        $files = new \RecursiveIteratorIterator(new \RecursiveDirectoryIterator(\dirname(__DIR__) . '/src'));
        $found = [];
        foreach ($files as $file) {
            if ($file->getExtension() !== 'php') {
                continue;
            }
            $code = (string) \file_get_contents($file->getPathname());
            \preg_match('/^namespace ([^;]+);/m', $code, $ns);
            $uses = [];
            \preg_match_all('/^use ([\w\\\\]+)(?: as (\w+))?;/m', $code, $m, \PREG_SET_ORDER);
            foreach ($m as $use) {
                $uses[$use[2] ?? \substr((string) \strrchr('\\' . $use[1], '\\'), 1)] = $use[1];
            }
            \preg_match_all('/new\s+(\\\\?[\w\\\\]*(?:Exception|Error))\s*\(/', $code, $news);
            foreach ($news[1] as $name) {
                if ($name[0] === '\\') {
                    $class = \substr($name, 1);
                } else {
                    $head = \explode('\\', $name)[0];
                    $class = isset($uses[$head]) ? $uses[$head] . \substr($name, \strlen($head)) : ($ns[1] ?? '') . '\\' . $name;
                }
                $found[$class] = $file->getFilename();
            }
        }
        self::assertNotEmpty($found);
        foreach ($found as $class => $where) {
            if (\in_array($class, self::HYPERFS_OWN, true)) {
                continue;
            }
            self::assertTrue(\is_a($class, WsBridgeException::class, true), "{$where} throws {$class}, which does not extend WsBridgeException");
        }
    }
}
