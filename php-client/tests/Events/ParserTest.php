<?php

declare(strict_types=1);

namespace WsBridge\Tests\Events;

use PHPUnit\Framework\TestCase;
use WsBridge\Events\Event;
use WsBridge\Events\Parser;
use WsBridge\Exception\InvalidRequestException;

/**
 * Parser alone, on what the bridge may post and on what an attacker who
 * reaches the events endpoint may post instead: valid batches decode to
 * exactly their events; malformed, oversized and hostile ones raise
 * InvalidRequestException (400), never another error, warning or notice
 * (phpunit.xml.dist fails on warnings). EventHandlerTest covers the same
 * bodies through the handler (signatures, dispatch).
 */
final class ParserTest extends TestCase
{
    private const FD = 7;
    private const MAX_FD = (1 << 53) - 1;

    /**
     * @param list<mixed> $events
     */
    private static function batch(array $events, mixed $node = 0): string
    {
        return \json_encode(['node' => $node, 'events' => $events], \JSON_THROW_ON_ERROR | \JSON_UNESCAPED_SLASHES | \JSON_UNESCAPED_UNICODE);
    }

    /**
     * @param array<string, mixed> $extra
     * @return array<string, mixed>
     */
    private static function open(int $fd = self::FD, int $seq = 1, array $extra = []): array
    {
        return $extra + ['type' => 'open', 'fd' => $fd, 'seq' => $seq, 'time' => 1764050000123, 'path' => '/', 'query' => 'room=1&token=abc',
            'headers' => ['Host' => ['example.com'], 'X-Many' => ['a', 'b']], 'remote_addr' => '203.0.113.9:51234', 'subprotocol' => '',
            'user' => '42', 'groups' => ['vip']];
    }

    /**
     * @return array<string, mixed>
     */
    private static function message(int $seq, string $data, int $opcode = 1, int $fd = self::FD): array
    {
        $m = ['type' => 'message', 'fd' => $fd, 'seq' => $seq, 'time' => 1764050000200, 'opcode' => $opcode, 'data' => $data];
        if ($opcode === 2) {
            $m['data'] = \base64_encode($data);
            $m['encoding'] = 'base64';
        }
        return $m;
    }

    /**
     * @return array<string, mixed>
     */
    private static function close(int $seq, int $fd = self::FD, int $code = 1000, string $by = 'client'): array
    {
        return ['type' => 'close', 'fd' => $fd, 'seq' => $seq, 'time' => 1764050000300, 'code' => $code, 'reason' => 'bye', 'by' => $by];
    }

    /**
     * Each event as "type fd seq" and what its type carries.
     *
     * @param list<Event> $events
     * @return list<string>
     */
    private static function summary(array $events): array
    {
        return \array_map(static fn (Event $e): string => match ($e->type) {
            Event::OPEN => "open {$e->fd} {$e->seq} {$e->path}?{$e->query} " . \json_encode($e->headers) . " {$e->remoteAddr} " . ($e->user ?? 'null') . ' ' . \implode(',', $e->groups),
            Event::MESSAGE => "message {$e->fd} {$e->seq} {$e->opcode} " . \bin2hex($e->data),
            Event::CLOSE => "close {$e->fd} {$e->seq} {$e->code} {$e->reason} {$e->by}",
        }, $events);
    }

    /**
     * @return array<string, array{string, list<string>}>
     */
    public static function validBatches(): array
    {
        $all = \implode('', \array_map('chr', \range(0, 255)));
        $big = \str_repeat('x', 1 << 20);
        $many = [];
        $manyWant = [];
        for ($i = 1; $i <= 5000; $i++) {
            $fd = 1 + ($i % 50);
            $seq = \intdiv($i, 50) + 1;
            $many[] = self::message($seq, "m{$i}", 1, $fd);
            $manyWant[] = "message {$fd} {$seq} 1 " . \bin2hex("m{$i}");
        }
        $headers = [];
        for ($i = 0; $i < 1000; $i++) {
            $headers["X-H{$i}"] = [\str_repeat('v', 100)];
        }
        return [
            'the protocol example' => [
                '{"node": 0, "events": [
                  {"type": "open", "fd": 7, "seq": 1, "time": 1764050000123, "path": "/", "query": "room=1&token=abc",
                   "headers": {"Host": ["example.com"], "User-Agent": ["..."]},
                   "remote_addr": "203.0.113.9:51234", "subprotocol": "", "user": "42", "groups": ["vip"]},
                  {"type": "message", "fd": 7, "seq": 2, "time": 1764050000200, "opcode": 1, "data": "hello"},
                  {"type": "message", "fd": 7, "seq": 3, "time": 1764050000201, "opcode": 2, "data": "AAEC/w==", "encoding": "base64"},
                  {"type": "close", "fd": 7, "seq": 4, "time": 1764050000300, "code": 1000, "reason": "", "by": "client"}
                ]}',
                [
                    'open 7 1 /?room=1&token=abc {"Host":["example.com"],"User-Agent":["..."]} 203.0.113.9:51234 42 vip',
                    'message 7 2 1 ' . \bin2hex('hello'),
                    'message 7 3 2 000102ff',
                    'close 7 4 1000  client',
                ],
            ],
            'empty' => ['{"node":1023,"events":[]}', []],
            'a seq gap (a dropped message)' => [self::batch([self::open(), self::message(3, 'after'), self::close(5)]),
                ['open 7 1 /?room=1&token=abc {"Host":["example.com"],"X-Many":["a","b"]} 203.0.113.9:51234 42 vip', 'message 7 3 1 ' . \bin2hex('after'), 'close 7 5 1000 bye client']],
            'a batch that starts mid-connection' => [self::batch([self::message(40, 'x'), self::close(41, self::FD, 1006, 'server')]),
                ['message 7 40 1 78', 'close 7 41 1006 bye server']],
            'fds interleaved' => [self::batch([self::message(2, 'a', 1, 8), self::message(5, 'b', 1, 9), self::message(3, 'c', 1, 8)]),
                ['message 8 2 1 61', 'message 9 5 1 62', 'message 8 3 1 63']],
            'the largest fd' => [self::batch([self::message(1, '', 1, self::MAX_FD)]), ['message ' . self::MAX_FD . ' 1 1 ']],
            'optional fields left out, user null' => [
                '{"node":0,"events":[{"type":"open","fd":7,"seq":1,"time":0,"path":"/p","remote_addr":"[::1]:5","user":null},{"type":"message","fd":7,"seq":2,"time":1,"opcode":1},{"type":"close","fd":7,"seq":3,"time":2,"code":1005,"by":"client"}]}',
                ['open 7 1 /p? [] [::1]:5 null ', 'message 7 2 1 ', 'close 7 3 1005  client'],
            ],
            'unknown fields and event types (a newer bridge)' => [
                '{"node":0,"future":{"a":[1,{"b":null}]},"events":[{"type":"presence_update","fd":7,"seq":1,"time":1,"anything":[[1]]},' . \json_encode(self::message(2, 'm') + ['extra' => true]) . ']}',
                ['message 7 2 1 6d'],
            ],
            'every byte, binary' => [self::batch([self::message(1, $all, 2)]), ['message 7 1 2 ' . \bin2hex($all)]],
            'text with escapes, NUL and U+2028' => ['{"node":0,"events":[{"type":"message","fd":7,"seq":1,"time":1,"opcode":1,"data":"<\u0000\u2028\"\\\\é\ud83d\ude00>"}]}',
                ['message 7 1 1 ' . \bin2hex("<\0\u{2028}\"\\é😀>")]],
            'a 1 MiB message' => [self::batch([self::message(1, $big)]), ['message 7 1 1 ' . \bin2hex($big)]],
            '5000 events of 50 fds' => [self::batch($many), $manyWant],
            '1000 headers' => [self::batch([self::open(self::FD, 1, ['headers' => $headers])]),
                ['open 7 1 /?room=1&token=abc ' . \json_encode($headers) . ' 203.0.113.9:51234 42 vip']],
            'headers and groups null: none' => [self::batch([self::open(self::FD, 1, ['headers' => null, 'groups' => null])]),
                ['open 7 1 /?room=1&token=abc [] 203.0.113.9:51234 42 ']],
            'whitespace around everything' => [" \n\t{ \"node\" : 0 , \"events\" : [ ] } \r\n", []],
            'duplicate keys (the last wins, as json_decode does)' => ['{"node":5,"node":0,"events":[{"type":"close","fd":7,"seq":9,"seq":2,"time":1,"code":1000,"by":"client"}]}',
                ['close 7 2 1000  client']],
        ];
    }

    /**
     * @dataProvider validBatches
     * @param list<string> $want
     */
    public function testValidBatches(string $body, array $want): void
    {
        $events = Parser::batch($body);
        self::assertSame($want, self::summary($events));
        $node = \json_decode($body, true, 512, \JSON_BIGINT_AS_STRING)['node'];
        foreach ($events as $e) {
            self::assertSame($node, $e->node);
        }
    }

    /**
     * @return array<string, array{string, string}>
     */
    public static function malformedBatches(): array
    {
        $with = static fn (array $event, array $change): string => self::batch([\array_merge($event, $change)]);
        $open = self::open();
        $msg = self::message(2, 'hi');
        $bin = self::message(2, "\x00\x01", 2);
        $close = self::close(3);
        $nest = static fn (int $n): string => \str_repeat('{"a":', $n) . '1' . \str_repeat('}', $n);
        return [
            // Not a batch at all.
            'whitespace only' => [" \n", 'not valid JSON'],
            'null' => ['null', 'must be a JSON object'],
            'true' => ['true', 'must be a JSON object'],
            'a number' => ['0', 'must be a JSON object'],
            'an object with list keys' => ['{"0":0,"1":[]}', 'must be a JSON object'],
            'trailing garbage' => ['{"node":0,"events":[]}x', 'not valid JSON'],
            'two objects' => ['{"node":0,"events":[]}{"node":0,"events":[]}', 'not valid JSON'],
            'a byte order mark' => ["\xEF\xBB\xBF{\"node\":0,\"events\":[]}", 'not valid JSON'],
            'a lone surrogate' => ['{"node":0,"events":[],"x":"\ud800"}', 'not valid JSON'],
            'invalid UTF-8 in a key' => ["{\"node\":0,\"events\":[],\"\xc3\x28\":1}", 'not valid JSON'],
            'overlong UTF-8' => ["{\"node\":0,\"events\":[{\"type\":\"message\",\"fd\":7,\"seq\":1,\"time\":1,\"opcode\":1,\"data\":\"\xc0\xaf\"}]}", 'not valid JSON'],
            'single quotes' => ["{'node':0,'events':[]}", 'not valid JSON'],
            'a comment' => ['{"node":0,/* x */"events":[]}', 'not valid JSON'],
            'NaN' => ['{"node":NaN,"events":[]}', 'not valid JSON'],
            'truncated' => [\substr(self::batch([self::open()]), 0, -3), 'not valid JSON'],
            'nesting past the limit in unknown fields' => ['{"node":0,"x":' . $nest(7) . ',"events":[]}', 'nests deeper'],
            'deep nesting, objects' => [$nest(100000), 'nests deeper'],
            // The envelope.
            'node null' => ['{"node":null,"events":[]}', '"node"'],
            'node -1' => ['{"node":-1,"events":[]}', '"node"'],
            'node as a float' => ['{"node":0.0,"events":[]}', '"node"'],
            'node as an exponent' => ['{"node":1e0,"events":[]}', '"node"'],
            'node true' => ['{"node":true,"events":[]}', '"node"'],
            'node past int64' => ['{"node":99999999999999999999,"events":[]}', '"node"'],
            'events null' => ['{"node":0,"events":null}', '"events" must be a list'],
            'events with a gap in its keys' => ['{"node":0,"events":{"0":' . \json_encode($msg) . ',"2":' . \json_encode($msg) . '}}', '"events" must be a list'],
            'an event that is null' => ['{"node":0,"events":[null]}', 'event 0: must be an object'],
            'an event that is a string' => ['{"node":0,"events":["open"]}', 'event 0: must be an object'],
            'an empty event' => ['{"node":0,"events":[{}]}', 'must be an object'],
            // Identity and order.
            'type empty' => [$with($open, ['type' => '']), 'malformed event type'],
            'type of 33 letters' => [$with($open, ['type' => \str_repeat('a', 33)]), 'malformed event type'],
            'type with a NUL' => [$with($open, ['type' => "open\0"]), 'malformed event type'],
            'type with a newline' => [$with($open, ['type' => "open\n"]), 'malformed event type'],
            'type null' => [$with($open, ['type' => null]), '"type" is missing'],
            'type as a list' => [$with($open, ['type' => ['open']]), '"type" is missing'],
            'fd true' => [$with($open, ['fd' => true]), '"fd"'],
            'fd as an exponent' => ['{"node":0,"events":[{"type":"close","fd":7e0,"seq":1,"time":1,"code":1000,"by":"client"}]}', '"fd"'],
            'fd 2^53+1' => ['{"node":0,"events":[{"type":"close","fd":9007199254740993,"seq":1,"time":1,"code":1000,"by":"client"}]}', '"fd"'],
            'fd int64 max' => ['{"node":0,"events":[{"type":"close","fd":9223372036854775807,"seq":1,"time":1,"code":1000,"by":"client"}]}', '"fd"'],
            'fd int64 min' => ['{"node":0,"events":[{"type":"close","fd":-9223372036854775808,"seq":1,"time":1,"code":1000,"by":"client"}]}', '"fd"'],
            'seq past int64' => ['{"node":0,"events":[{"type":"close","fd":7,"seq":9223372036854775808,"time":1,"code":1000,"by":"client"}]}', '"seq"'],
            'seq as a float' => ['{"node":0,"events":[{"type":"close","fd":7,"seq":1.5,"time":1,"code":1000,"by":"client"}]}', '"seq"'],
            'seq negative' => [$with($close, ['seq' => -3]), '"seq"'],
            'time as a string' => [$with($close, ['time' => '1']), '"time"'],
            'time as a float' => ['{"node":0,"events":[{"type":"close","fd":7,"seq":1,"time":1.0,"code":1000,"by":"client"}]}', '"time"'],
            'the same seq twice' => [self::batch([self::message(2, 'a'), self::message(2, 'b')]), 'does not follow seq 2'],
            'seq going back across fds' => [self::batch([self::message(5, 'a'), self::message(1, 'b', 1, 8), self::message(4, 'c')]), 'does not follow seq 5'],
            'an open after the close' => [self::batch([self::close(3), self::open(self::FD, 4)]), 'after its close event'],
            'two closes' => [self::batch([self::close(3), self::close(4)]), 'after its close event'],
            // Open events.
            'path null' => [$with($open, ['path' => null]), '"path"'],
            'path as a list' => [$with($open, ['path' => ['/']]), '"path"'],
            'query null' => [$with($open, ['query' => null]), '"query"'],
            'remote_addr empty' => [$with($open, ['remote_addr' => '']), '"remote_addr"'],
            'subprotocol as a number' => [$with($open, ['subprotocol' => 1]), '"subprotocol"'],
            'user empty' => [$with($open, ['user' => '']), '"user"'],
            'user as a list' => [$with($open, ['user' => ['42']]), '"user"'],
            'user true' => [$with($open, ['user' => true]), '"user"'],
            'groups null inside' => [$with($open, ['groups' => ['vip', null]]), '"groups"'],
            'groups as an object' => [$with($open, ['groups' => ['a' => 'vip']]), '"groups"'],
            'headers as a string' => [$with($open, ['headers' => 'Host: x']), '"headers"'],
            'header value null inside' => [$with($open, ['headers' => ['Host' => ['a', null]]]), 'header Host'],
            'header values as an object' => [$with($open, ['headers' => ['Host' => ['a' => 'x']]]), 'header Host'],
            'header name empty' => [$with($open, ['headers' => ['' => ['v']]]), 'invalid header name'],
            'header name with a NUL' => [$with($open, ['headers' => ["X\0Y" => ['v']]]), 'invalid header name'],
            'header name with a colon' => [$with($open, ['headers' => ['Host:' => ['v']]]), 'invalid header name'],
            'header name not ASCII' => [$with($open, ['headers' => ['Hóst' => ['v']]]), 'invalid header name'],
            'header name with a newline' => [$with($open, ['headers' => ["X-A\n" => ['v']]]), 'invalid header name'],
            // Message events.
            'opcode 0 (continuation)' => [$with($msg, ['opcode' => 0]), '"opcode"'],
            'opcode 8 (close)' => [$with($msg, ['opcode' => 8]), '"opcode"'],
            'opcode 1.0' => ['{"node":0,"events":[{"type":"message","fd":7,"seq":1,"time":1,"opcode":1.0,"data":"x"}]}', '"opcode"'],
            'data null' => [$with($msg, ['data' => null]), '"data"'],
            'data as a list' => [$with($msg, ['data' => ['x']]), '"data"'],
            'text with encoding base64 of invalid data' => [$with($msg, ['encoding' => 'base64', 'data' => 'hi']), 'not valid base64'],
            'binary with an empty encoding' => [$with($bin, ['encoding' => '']), 'binary data must be base64'],
            'encoding null on binary' => [$with($bin, ['encoding' => null]), 'binary data must be base64'],
            'encoding as a number' => [$with($bin, ['encoding' => 64]), 'unknown "encoding"'],
            'encoding in capitals' => [$with($bin, ['encoding' => 'BASE64']), 'unknown "encoding"'],
            'base64 with a newline' => [$with($bin, ['data' => "AAE=\n"]), 'not valid base64'],
            'base64 with a NUL' => [$with($bin, ['data' => "AAE=\0"]), 'not valid base64'],
            'base64 without padding' => [$with($bin, ['data' => 'AAE']), 'not valid base64'],
            // Close events.
            'close code 0' => [$with($close, ['code' => 0]), '"code"'],
            'close code negative' => [$with($close, ['code' => -1000]), '"code"'],
            'close code as a string' => [$with($close, ['code' => '1000']), '"code"'],
            'close code huge' => [$with($close, ['code' => \PHP_INT_MAX]), '"code"'],
            'close by in capitals' => [$with($close, ['by' => 'Client']), '"by"'],
            'close by null' => [$with($close, ['by' => null]), '"by"'],
            'close reason null' => [$with($close, ['reason' => null]), '"reason"'],
        ];
    }

    /**
     * @dataProvider malformedBatches
     */
    public function testMalformedBatchesAreRefused(string $body, string $why): void
    {
        try {
            $events = Parser::batch($body);
            self::fail('parsed into ' . \json_encode(self::summary($events)) . ", want an error about {$why}");
        } catch (InvalidRequestException $e) {
            self::assertStringContainsString($why, $e->getMessage());
            self::assertSame(400, $e->getStatus());
            self::assertLessThan(400, \strlen($e->getMessage()), 'the error message quotes the hostile input');
        }
    }

    /**
     * @return array<string, array{string, string}>
     */
    public static function malformedHandshakes(): array
    {
        $ok = ['node' => 0, 'path' => '/', 'query' => 'token=abc', 'headers' => ['Host' => ['example.com']], 'remote_addr' => '203.0.113.9:51234'];
        $with = static fn (array $change): string => \json_encode(\array_merge($ok, $change), \JSON_THROW_ON_ERROR);
        return [
            'not JSON' => ['{"node":0', 'not valid JSON'],
            'a list' => ['[1]', 'must be a JSON object'],
            'empty (json_decode cannot tell [] from {})' => ['[]', '"node"'],
            'node out of range' => [$with(['node' => 1024]), '"node"'],
            'no path' => [\json_encode(['node' => 0, 'remote_addr' => 'a:1']), '"path"'],
            'path empty' => [$with(['path' => '']), '"path"'],
            'query as a number' => [$with(['query' => 1]), '"query"'],
            'headers as a list' => [$with(['headers' => ['Host']]), '"headers"'],
            'bad header name' => [$with(['headers' => ["X\r\nY" => ['v']]]), 'invalid header name'],
            'no remote_addr' => [\json_encode(['node' => 0, 'path' => '/']), '"remote_addr"'],
            'deep nesting' => [\str_repeat('[', 10000) . \str_repeat(']', 10000), 'nests deeper'],
        ];
    }

    /**
     * @dataProvider malformedHandshakes
     */
    public function testMalformedHandshakesAreRefused(string $body, string $why): void
    {
        $this->expectException(InvalidRequestException::class);
        $this->expectExceptionMessage($why);
        Parser::handshake($body);
    }

    public function testAValidHandshake(): void
    {
        $h = Parser::handshake('{"node":3,"path":"/ws","query":"a=1&b","headers":{"Host":["x"],"Cookie":["a=b","c=d"]},"remote_addr":"[::1]:9","extra":1}');
        self::assertSame(['node' => 3, 'path' => '/ws', 'query' => 'a=1&b', 'headers' => ['Host' => ['x'], 'Cookie' => ['a=b', 'c=d']], 'remote_addr' => '[::1]:9'], $h);
    }

    /**
     * Seeds of the mutation test: each mutates a valid batch many times.
     *
     * @return array<string, array{int}>
     */
    public static function mutationSeeds(): array
    {
        $out = [];
        for ($seed = 1; $seed <= 40; $seed++) {
            $out["seed {$seed}"] = [$seed];
        }
        return $out;
    }

    /**
     * Random damage to a valid batch (bytes flipped, inserted, deleted,
     * cut; tokens swapped): the result is a list of valid events or an
     * InvalidRequestException, never another error, warning or notice.
     *
     * @dataProvider mutationSeeds
     */
    public function testMutatedBatchesNeverBreakTheParser(int $seed): void
    {
        \mt_srand($seed);
        $valid = self::batch([
            self::open(), self::message(2, 'hé', 1), self::message(3, "\x00\xff", 2),
            self::open(9, 1, ['user' => null, 'groups' => []]), self::close(4), self::close(2, 9, 1006, 'server'),
        ]);
        $tokens = ['{', '}', '[', ']', ',', ':', '"', '\\', '\u0000', '\ud800', 'null', 'true', '-', '1e400', '9223372036854775808', '0.5', ' ', "\xff"];
        $parsed = 0;
        for ($i = 0; $i < 200; $i++) {
            $body = $valid;
            for ($n = \mt_rand(1, 4); $n > 0; $n--) {
                $pos = \mt_rand(0, \strlen($body));
                switch (\mt_rand(0, 4)) {
                    case 0:
                        $body = \substr($body, 0, $pos) . \chr(\mt_rand(0, 255)) . \substr($body, $pos + 1);
                        break;
                    case 1:
                        $body = \substr($body, 0, $pos) . $tokens[\mt_rand(0, \count($tokens) - 1)] . \substr($body, $pos);
                        break;
                    case 2:
                        $body = \substr($body, 0, $pos) . \substr($body, $pos + \mt_rand(1, 8));
                        break;
                    case 3:
                        $body = \substr($body, 0, $pos);
                        break;
                    default:
                        // A digit changed: fds, seqs, codes and opcodes move.
                        if (\preg_match_all('/\d/', $body, $m, \PREG_OFFSET_CAPTURE) > 0) {
                            $at = $m[0][\mt_rand(0, \count($m[0]) - 1)][1];
                            $body[$at] = (string) \mt_rand(0, 9);
                        }
                }
            }
            try {
                $events = Parser::batch($body);
            } catch (InvalidRequestException $e) {
                self::assertNotSame('', $e->getMessage());
                continue;
            }
            $parsed++;
            $last = [];
            foreach ($events as $e) {
                self::assertContains($e->type, [Event::OPEN, Event::MESSAGE, Event::CLOSE], $body);
                self::assertTrue($e->fd >= 1 && $e->fd <= self::MAX_FD, $body);
                self::assertGreaterThan($last[$e->fd] ?? 0, $e->seq, $body);
                $last[$e->fd] = $e->seq;
                if ($e->type === Event::MESSAGE) {
                    self::assertContains($e->opcode, [1, 2], $body);
                }
                if ($e->type === Event::CLOSE) {
                    self::assertTrue($e->code >= 1000 && $e->code <= 4999, $body);
                    self::assertContains($e->by, ['client', 'server'], $body);
                }
            }
        }
        self::assertGreaterThanOrEqual(0, $parsed);
    }
}
