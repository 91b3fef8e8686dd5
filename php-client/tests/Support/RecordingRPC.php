<?php

declare(strict_types=1);

namespace WsBridge\Tests\Support;

use WsBridge\Goridge\RPCInterface;

/**
 * An RPCInterface that records the calls and answers from a table, for
 * tests of what the Sender's users send (no bridge needed).
 */
final class RecordingRPC implements RPCInterface
{
    /** @var list<array{string, mixed}> */
    public array $calls = [];

    /**
     * @param array<string, mixed> $answers method => reply (or a Closure of the arguments); Push, Disconnect and Check answer true unless set
     */
    public function __construct(private array $answers = [])
    {
    }

    public function call(string $method, mixed $args): mixed
    {
        $this->calls[] = [$method, $args];
        $answer = $this->answers[$method] ?? true;
        return $answer instanceof \Closure ? $answer($args) : $answer;
    }

    /**
     * @return list<string> "Method json(args)" lines, for compact assertions
     */
    public function lines(): array
    {
        return \array_map(
            static fn (array $c): string => $c[0] . ' ' . \json_encode($c[1], \JSON_UNESCAPED_SLASHES | \JSON_UNESCAPED_UNICODE),
            $this->calls,
        );
    }
}
