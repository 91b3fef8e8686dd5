<?php

declare(strict_types=1);

namespace WsBridge\Tests\Events;

use PHPUnit\Framework\TestCase;
use Swoole\Http\Request;
use Swoole\WebSocket\Frame;
use WsBridge\Events\Event;
use WsBridge\Events\EventHandler;
use WsBridge\Events\MemorySeqStore;
use WsBridge\Events\SeqStore;
use WsBridge\Events\Server;
use WsBridge\Events\Signature;
use WsBridge\Exception\InvalidRequestException;
use WsBridge\Exception\SignatureException;
use WsBridge\Sender;
use WsBridge\Tests\Support\RecordingController;
use WsBridge\Tests\Support\RecordingRPC;

/**
 * The events handler: signatures, hostile batches, order, binary data,
 * controller failures, redeliveries.
 */
final class EventHandlerTest extends TestCase
{
    private const SECRET = SignatureTest::SECRET;
    private const NOW = 1764050000;

    private RecordingController $controller;
    private RecordingRPC $rpc;
    /** @var list<array{\Throwable, ?Event}> */
    private array $errors = [];

    protected function setUp(): void
    {
        $this->controller = new RecordingController();
        $this->rpc = new RecordingRPC();
        $this->errors = [];
    }

    private function handler(): EventHandler
    {
        return EventHandler::create($this->controller, new Sender($this->rpc), [
            'secret' => self::SECRET,
            'on_error' => function (\Throwable $e, ?Event $event): void {
                $this->errors[] = [$e, $event];
            },
        ])->withClock(static fn (): int => self::NOW);
    }

    /**
     * @param array<string, string|list<string>> $headers replace the signed defaults
     */
    private static function post(EventHandler $h, string $body, string $kind = 'events', array $headers = []): \WsBridge\Events\Response
    {
        return $h->handle($body, $headers + [
            'Content-Type' => 'application/json',
            'X-Wsbridge-Kind' => $kind,
            'X-Wsbridge-Node' => '0',
            'X-Wsbridge-Timestamp' => (string) self::NOW,
            'X-Wsbridge-Signature' => Signature::sign(self::SECRET, self::NOW, $body),
            'X-Wsbridge-Attempt' => '1',
        ]);
    }

    /**
     * @param list<array<string, mixed>> $events
     */
    private static function batch(array $events, int $node = 0): string
    {
        return \json_encode(['node' => $node, 'events' => $events], \JSON_THROW_ON_ERROR | \JSON_UNESCAPED_SLASHES);
    }

    /**
     * @return array<string, mixed>
     */
    private static function open(int $fd, int $seq = 1, array $extra = []): array
    {
        return $extra + ['type' => 'open', 'fd' => $fd, 'seq' => $seq, 'time' => 1764050000123, 'path' => '/', 'query' => '',
            'headers' => ['Host' => ['example.com']], 'remote_addr' => '203.0.113.9:51234', 'subprotocol' => ''];
    }

    /**
     * @return array<string, mixed>
     */
    private static function message(int $fd, int $seq, string $data, int $opcode = 1): array
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
    private static function close(int $fd, int $seq, string $by = 'client', int $code = 1000): array
    {
        return ['type' => 'close', 'fd' => $fd, 'seq' => $seq, 'time' => 1764050000300, 'code' => $code, 'reason' => '', 'by' => $by];
    }

    private function assertNothingDispatched(): void
    {
        self::assertSame([], $this->controller->calls, 'the controller was called');
        self::assertSame([], $this->rpc->calls, 'the bridge was called');
    }

    public function testTheProtocolExample(): void
    {
        $res = self::post($this->handler(), SignatureTest::BATCH);
        self::assertSame(204, $res->status, $res->body);
        self::assertSame('', $res->body);
        self::assertSame(["open 7", "message 7 hello", "message 7 \x00\x01\x02\xff", 'close 7 0'], $this->controller->summary());
        self::assertSame([], $this->errors);

        [[, $server, $request], [, , $text], [, , $binary]] = $this->controller->calls;
        self::assertInstanceOf(Server::class, $server);
        self::assertInstanceOf(Request::class, $request);
        self::assertSame(7, $request->fd);
        self::assertSame(['host' => 'example.com'], $request->header);
        self::assertSame(['room' => '1', 'token' => 'abc'], $request->get);
        self::assertNull($request->cookie);
        self::assertSame([
            'request_method' => 'GET',
            'request_uri' => '/',
            'path_info' => '/',
            'request_time' => 1764050000,
            'request_time_float' => 1764050000.123,
            'server_protocol' => 'HTTP/1.1',
            'server_port' => 80,
            'remote_port' => 51234,
            'remote_addr' => '203.0.113.9',
            'master_time' => 1764050000,
            'query_string' => 'room=1&token=abc',
        ], $request->server);

        self::assertInstanceOf(Frame::class, $text);
        self::assertSame([7, 'hello', 1, true, 1], [$text->fd, $text->data, $text->opcode, $text->finish, $text->flags]);
        self::assertSame([7, "\x00\x01\x02\xff", 2, true], [$binary->fd, $binary->data, $binary->opcode, $binary->finish]);
    }

    public function testRequestProperties(): void
    {
        $body = self::batch([self::open(9, 1, [
            'path' => '/chat/room',
            'query' => 'a[]=1&a[]=2&name=caf%C3%A9&flag',
            'headers' => [
                'Host' => ['chat.example.com:8443'],
                'Cookie' => ['session=abc%20def; theme=dark', 'lang=fr'],
                'Accept-Encoding' => ['gzip', 'br'],
                'Sec-Websocket-Protocol' => ['chat'],
            ],
            'remote_addr' => '[2001:db8::1]:40000',
            'subprotocol' => 'chat',
            'user' => '42',
            'groups' => ['vip'],
        ])]);
        self::assertSame(204, self::post($this->handler(), $body)->status);
        $request = $this->controller->calls[0][2];
        self::assertSame([
            'host' => 'chat.example.com:8443',
            'cookie' => 'session=abc%20def; theme=dark; lang=fr',
            'accept-encoding' => 'gzip, br',
            'sec-websocket-protocol' => 'chat',
        ], $request->header);
        self::assertSame(['session' => 'abc def', 'theme' => 'dark', 'lang' => 'fr'], $request->cookie);
        self::assertSame(['a' => ['1', '2'], 'name' => "caf\u{e9}", 'flag' => ''], $request->get);
        self::assertSame('/chat/room', $request->server['request_uri']);
        self::assertSame('/chat/room', $request->server['path_info']);
        self::assertSame('2001:db8::1', $request->server['remote_addr']);
        self::assertSame(40000, $request->server['remote_port']);
        self::assertSame(8443, $request->server['server_port']);
        self::assertSame('GET', $request->getMethod());

        // No query: get is null and there is no query_string, as in Swoole.
        $this->controller->calls = [];
        self::post($this->handler(), self::batch([self::open(10)]));
        $request = $this->controller->calls[0][2];
        self::assertNull($request->get);
        self::assertArrayNotHasKey('query_string', $request->server);
    }

    public function testTheServerCarriesTheEvent(): void
    {
        self::post($this->handler(), self::batch([
            self::open(8, 1, ['user' => '42', 'groups' => ['vip']]),
            self::message(8, 2, 'hi'),
            ['type' => 'close', 'fd' => 8, 'seq' => 3, 'time' => 1764050000999, 'code' => 4003, 'reason' => "caf\u{e9}", 'by' => 'client'],
        ]));
        [$open, $message, $close] = \array_map(static fn (array $c): ?Event => $c[1]->event(), $this->controller->calls);
        self::assertSame([Event::OPEN, 1, '42', ['vip'], '203.0.113.9:51234'], [$open->type, $open->seq, $open->user, $open->groups, $open->remoteAddr]);
        self::assertSame([Event::MESSAGE, 2, 'hi', 1764050000200], [$message->type, $message->seq, $message->data, $message->time]);
        self::assertSame([Event::CLOSE, 3, 4003, "caf\u{e9}", 'client'], [$close->type, $close->seq, $close->code, $close->reason, $close->by]);
        self::assertNull($this->handler()->server()->event(), 'each call gets its own copy');
    }

    public function testOrderWithinABatchAcrossFds(): void
    {
        $events = [self::open(1), self::open(2), self::message(1, 2, 'a1'), self::message(2, 2, 'b1'), self::message(1, 3, 'a2'),
            self::close(2, 3, 'server'), self::message(1, 4, 'a3'), self::close(1, 5, 'client', 1006)];
        $want = ['open 1', 'open 2', 'message 1 a1', 'message 2 b1', 'message 1 a2', 'close 2 -1', 'message 1 a3', 'close 1 0'];
        for ($i = 0; $i < 200; $i++) {
            $events[] = self::message(3, $i + 1, "m{$i}");
            $want[] = "message 3 m{$i}";
        }
        $res = self::post($this->handler(), self::batch($events));
        self::assertSame(204, $res->status, $res->body);
        self::assertSame($want, $this->controller->summary());
    }

    public function testEventTypesOfANewerBridgeAreSkipped(): void
    {
        $events = [self::open(1), ['type' => 'typing', 'fd' => 1, 'seq' => 2, 'time' => 1], self::message(1, 3, 'after')];
        $res = self::post($this->handler(), self::batch($events));
        self::assertSame(204, $res->status, $res->body);
        self::assertSame(['open 1', 'message 1 after'], $this->controller->summary());
    }

    public function testBinaryRoundTrip(): void
    {
        $all = '';
        for ($i = 0; $i < 256; $i++) {
            $all .= \chr($i);
        }
        $big = \random_bytes(1 << 20);
        $res = self::post($this->handler()->withMaxBodySize(4 << 20), self::batch([
            self::message(4, 2, $all, 2), self::message(4, 3, $big, 2), self::message(4, 4, "caf\u{e9} \u{1f600}", 1), self::message(4, 5, '', 2),
        ]));
        self::assertSame(204, $res->status, $res->body);
        $frames = \array_column($this->controller->calls, 2);
        self::assertSame(\bin2hex($all), \bin2hex($frames[0]->data));
        self::assertSame(2, $frames[0]->opcode);
        self::assertTrue($big === $frames[1]->data, 'the 1 MiB binary message changed');
        self::assertSame("caf\u{e9} \u{1f600}", $frames[2]->data);
        self::assertSame(1, $frames[2]->opcode);
        self::assertSame('', $frames[3]->data);
    }

    public function testTheControllerPushesThroughTheSender(): void
    {
        self::post($this->handler(), self::batch([self::message(5, 2, 'echo hi'), self::message(5, 3, "echo \x00\xff", 2)]));
        self::assertSame([
            'Sender.Push {"fd":5,"data":"hi","opcode":1,"finish":true}',
            'Sender.Push {"fd":5,"data":"AP8=","opcode":2,"encoding":"base64","finish":true}',
        ], $this->rpc->lines());
    }

    public function testAControllerExceptionIsReportedAndTheBatchGoesOn(): void
    {
        $res = self::post($this->handler(), self::batch([self::open(5), self::message(5, 2, 'boom'), self::message(5, 3, 'after'), self::close(5, 4)]));
        self::assertSame(204, $res->status, 'a controller exception must not make the bridge redeliver');
        self::assertSame(['open 5', 'message 5 boom', 'message 5 after', 'close 5 0'], $this->controller->summary());
        self::assertCount(1, $this->errors);
        [$e, $event] = $this->errors[0];
        self::assertInstanceOf(\DomainException::class, $e);
        self::assertSame('boom on fd 5', $e->getMessage());
        self::assertSame([Event::MESSAGE, 5, 2], [$event->type, $event->fd, $event->seq]);
    }

    public function testWithoutAnErrorHandlerErrorsGoToErrorLog(): void
    {
        $log = \tempnam(\sys_get_temp_dir(), 'wsbridge-errlog-');
        $previous = \ini_set('error_log', $log);
        try {
            $h = new EventHandler($this->controller, new Sender($this->rpc));
            self::assertSame(204, $h->handle(self::batch([self::message(5, 2, 'boom')]), ['x-wsbridge-kind' => 'events'])->status);
            self::assertSame(400, $h->handle('{', ['x-wsbridge-kind' => 'events'])->status);
            $text = (string) \file_get_contents($log);
            self::assertStringContainsString('wsbridge: the message event of fd 5 (seq 2) failed: DomainException: boom on fd 5', $text);
            self::assertStringContainsString('wsbridge: refused a request from the bridge (400)', $text);
        } finally {
            \ini_set('error_log', (string) $previous);
            @\unlink($log);
        }
    }

    public function testALogger(): void
    {
        $logger = new class () {
            /** @var list<string> */
            public array $lines = [];

            public function error(string $message, array $context = []): void
            {
                $this->lines[] = 'error ' . $message . (isset($context['exception']) ? ' +exception' : '');
            }

            public function warning(string $message, array $context = []): void
            {
                $this->lines[] = 'warning ' . $message;
            }
        };
        $h = $this->handler()->withLogger($logger);
        self::post($h, self::batch([self::message(5, 2, 'boom')]));
        self::post($h, 'junk');
        self::assertSame([
            'error wsbridge: the message event of fd 5 (seq 2) failed: DomainException: boom on fd 5 +exception',
            'warning wsbridge: refused a request from the bridge (400): the body is not valid JSON (or nests deeper than 8): Syntax error',
        ], $logger->lines);
    }

    /**
     * @return array<string, array{array<string, string|list<string>>, string}>
     */
    public static function badSignatures(): array
    {
        $body = self::batch([self::open(1)]);
        $sig = Signature::sign(self::SECRET, self::NOW, $body);
        return [
            'unsigned' => [['X-Wsbridge-Signature' => '', 'X-Wsbridge-Timestamp' => ''], 'not signed'],
            'wrong secret' => [['X-Wsbridge-Signature' => Signature::sign('guess', self::NOW, $body)], 'signature mismatch'],
            'signed for another body' => [['X-Wsbridge-Signature' => Signature::sign(self::SECRET, self::NOW, $body . ' ')], 'signature mismatch'],
            'stale' => [['X-Wsbridge-Timestamp' => (string) (self::NOW - 301), 'X-Wsbridge-Signature' => Signature::sign(self::SECRET, self::NOW - 301, $body)], 'stale'],
            'from the future' => [['X-Wsbridge-Timestamp' => (string) (self::NOW + 301), 'X-Wsbridge-Signature' => Signature::sign(self::SECRET, self::NOW + 301, $body)], 'stale'],
            'timestamp changed' => [['X-Wsbridge-Timestamp' => (string) (self::NOW + 1), 'X-Wsbridge-Signature' => $sig], 'signature mismatch'],
            'no timestamp' => [['X-Wsbridge-Timestamp' => ''], 'no X-Wsbridge-Timestamp'],
        ];
    }

    /**
     * @dataProvider badSignatures
     * @param array<string, string> $headers
     */
    public function testBadSignaturesAre401(array $headers, string $why): void
    {
        $res = self::post($this->handler(), self::batch([self::open(1)]), 'events', $headers);
        self::assertSame(401, $res->status);
        self::assertStringContainsString($why, \json_decode($res->body, true)['error']);
        self::assertSame('application/json', $res->headers['Content-Type']);
        $this->assertNothingDispatched();
        self::assertInstanceOf(SignatureException::class, $this->errors[0][0]);
        self::assertNull($this->errors[0][1]);
    }

    public function testGoodSignatureWithinTheToleranceAndInAnyHeaderForm(): void
    {
        $body = self::batch([self::open(1)]);
        $ts = self::NOW - 300;
        $res = $this->handler()->handle($body, [
            'x-wsbridge-kind' => ['events'],
            'X-WSBRIDGE-TIMESTAMP' => [(string) $ts],
            'x-Wsbridge-Signature' => Signature::sign(self::SECRET, $ts, $body),
        ]);
        self::assertSame(204, $res->status, $res->body);
        self::assertSame(['open 1'], $this->controller->summary());
    }

    public function testWithoutASecretUnsignedRequestsAreAccepted(): void
    {
        $h = (new EventHandler($this->controller, new Sender($this->rpc)))->withSecret('');
        self::assertFalse($h->isSigned());
        self::assertSame(204, $h->handle(self::batch([self::open(1)]), ['X-Wsbridge-Kind' => 'events'])->status);
        self::assertSame(['open 1'], $this->controller->summary());
        self::assertTrue($this->handler()->isSigned());
        // getenv() of an unset WSBRIDGE_EVENTS_SECRET is false.
        self::assertFalse(EventHandler::create($this->controller, new Sender($this->rpc), ['secret' => false])->isSigned());
        self::assertTrue(EventHandler::create($this->controller, new Sender($this->rpc), ['secret' => ['', 'b']])->isSigned());
    }

    /**
     * @return array<string, array{string, string}>
     */
    public static function hostileBatches(): array
    {
        $b = static fn (array ...$events): string => self::batch($events);
        $with = static fn (array $event, array $change): string => self::batch([\array_merge($event, $change)]);
        $without = static function (array $event, string $key): string {
            unset($event[$key]);
            return self::batch([$event]);
        };
        $open = self::open(7);
        $msg = self::message(7, 2, 'hi');
        $bin = self::message(7, 2, "\x00\x01", 2);
        $close = self::close(7, 3);
        return [
            'not JSON' => ['{"node":0,"events":[', 'not valid JSON'],
            'empty body' => ['', 'not valid JSON'],
            'invalid UTF-8' => ["{\"node\":0,\"events\":[],\"x\":\"\xff\"}", 'not valid JSON'],
            'a JSON string' => ['"events"', 'must be a JSON object'],
            'a JSON list' => ['[1,2]', 'must be a JSON object'],
            'deep nesting' => [\str_repeat('[', 100000) . \str_repeat(']', 100000), 'nests deeper'],
            'deep nesting inside an event' => [$with($open, ['headers' => ['X' => [[[[[['x']]]]]]]]), 'nests deeper'],
            'no node' => ['{"events":[]}', '"node"'],
            'node as a string' => ['{"node":"0","events":[]}', '"node"'],
            'node out of range' => ['{"node":1024,"events":[]}', '"node"'],
            'no events' => ['{"node":0}', '"events" must be a list'],
            'events as an object' => ['{"node":0,"events":{"a":1}}', '"events" must be a list'],
            'events as a string' => ['{"node":0,"events":"open"}', '"events" must be a list'],
            'an event that is a number' => ['{"node":0,"events":[7]}', 'must be an object'],
            'an event that is a list' => ['{"node":0,"events":[[7]]}', 'must be an object'],
            'no type' => [$without($open, 'type'), '"type" is missing'],
            'type as a number' => [$with($open, ['type' => 1]), '"type" is missing'],
            'malformed type' => [$with($open, ['type' => "x\n" . \str_repeat('y', 1000)]), 'event 0 (fd 7): malformed event type'],
            'type with capitals' => [$with($open, ['type' => 'Open']), 'malformed event type'],
            'no fd' => [$without($open, 'fd'), '"fd"'],
            'fd as a string' => [$with($open, ['fd' => '7']), '"fd"'],
            'fd as a float' => ['{"node":0,"events":[{"type":"open","fd":7.0,"seq":1,"time":1,"path":"/","remote_addr":"a:1"}]}', '"fd"'],
            'fd zero' => [$with($open, ['fd' => 0]), '"fd"'],
            'negative fd' => [$with($open, ['fd' => -7]), '"fd"'],
            'fd 2^53' => [$with($open, ['fd' => 1 << 53]), '"fd"'],
            'fd past int64' => ['{"node":0,"events":[{"type":"open","fd":99999999999999999999999,"seq":1,"time":1,"path":"/","remote_addr":"a:1"}]}', '"fd"'],
            'fd 1e30' => ['{"node":0,"events":[{"type":"open","fd":1e30,"seq":1,"time":1,"path":"/","remote_addr":"a:1"}]}', '"fd"'],
            'fd with sequence 0' => [$with($open, ['fd' => 1 << 43]), '"fd"'],
            'no seq' => [$without($open, 'seq'), '"seq"'],
            'seq 0' => [$with($open, ['seq' => 0]), '"seq"'],
            'seq as a string' => [$with($open, ['seq' => '1']), '"seq"'],
            'no time' => [$without($open, 'time'), '"time"'],
            'negative time' => [$with($open, ['time' => -1]), '"time"'],
            'open without a path' => [$without($open, 'path'), '"path"'],
            'open with an empty path' => [$with($open, ['path' => '']), '"path"'],
            'open with a query that is a number' => [$with($open, ['query' => 5]), '"query"'],
            'open without remote_addr' => [$without($open, 'remote_addr'), '"remote_addr"'],
            'headers as a list' => [$with($open, ['headers' => ['Host']]), '"headers"'],
            'header value as a string' => [$with($open, ['headers' => ['Host' => 'example.com']]), 'header Host'],
            'header value as a number' => [$with($open, ['headers' => ['Host' => [7]]]), 'header Host'],
            'bad header name' => [$with($open, ['headers' => ["Bad Name\r\nX" => ['v']]]), 'invalid header name'],
            'groups as a string' => [$with($open, ['groups' => 'vip']), '"groups"'],
            'groups with a number' => [$with($open, ['groups' => ['vip', 7]]), '"groups"'],
            'user as a number' => [$with($open, ['user' => 42]), '"user"'],
            'message without opcode' => [$without($msg, 'opcode'), '"opcode"'],
            'message with opcode 9' => [$with($msg, ['opcode' => 9]), '"opcode"'],
            'message with opcode "1"' => [$with($msg, ['opcode' => '1']), '"opcode"'],
            'message data as a number' => [$with($msg, ['data' => 5]), '"data"'],
            'unknown encoding' => [$with($msg, ['encoding' => 'hex']), 'unknown "encoding"'],
            'binary without encoding' => [$without($bin, 'encoding'), 'binary data must be base64'],
            'invalid base64' => [$with($bin, ['data' => '@@@@']), 'not valid base64'],
            'base64 with bad padding' => [$with($bin, ['data' => 'AAEC/w=']), 'not valid base64'],
            'base64 with a space' => [$with($bin, ['data' => 'AAEC /w==']), 'not valid base64'],
            'non-canonical base64' => [$with($bin, ['data' => 'AAEC/x==']), 'not valid base64'],
            'base64url' => [$with($bin, ['data' => 'AAEC_w==']), 'not valid base64'],
            'close without code' => [$without($close, 'code'), '"code"'],
            'close code 999' => [$with($close, ['code' => 999]), '"code"'],
            'close code 5000' => [$with($close, ['code' => 5000]), '"code"'],
            'close without by' => [$without($close, 'by'), '"by"'],
            'close by someone else' => [$with($close, ['by' => 'bridge']), '"by"'],
            'close reason as a number' => [$with($close, ['reason' => 1]), '"reason"'],
            'seq going back' => [$b($open, $msg, self::message(7, 2, 'again')), 'does not follow seq 2'],
            'an event after the close' => [$b($open, $close, self::message(7, 4, 'late')), 'after its close event'],
            'a good event, then a bad one' => [$b($open, $msg, \array_merge($close, ['by' => 'nobody'])), '"by"'],
        ];
    }

    /**
     * @dataProvider hostileBatches
     */
    public function testHostileBatchesAre400AndDispatchNothing(string $body, string $why): void
    {
        $res = self::post($this->handler(), $body);
        self::assertSame(400, $res->status, $res->body);
        self::assertStringContainsString($why, \json_decode($res->body, true)['error']);
        $this->assertNothingDispatched();
        self::assertInstanceOf(InvalidRequestException::class, $this->errors[0][0]);
    }

    public function testOversizedBodyIs400BeforeAnythingElse(): void
    {
        $h = $this->handler()->withMaxBodySize(1000);
        $ok = self::batch([self::message(5, 2, \str_repeat('a', 900))]);
        self::assertLessThanOrEqual(1000, \strlen($ok));
        self::assertSame(204, self::post($h, $ok)->status);
        $this->controller->calls = [];
        $big = self::batch([self::message(5, 3, \str_repeat('a', 1000))]);
        $res = self::post($h, $big);
        self::assertSame(400, $res->status);
        self::assertStringContainsString('over the limit of 1000 bytes', $res->body);
        // Refused before the signature is even computed.
        self::assertSame(400, self::post($h, $big, 'events', ['X-Wsbridge-Signature' => 'junk'])->status);
        $this->assertNothingDispatched();
        self::assertSame(EventHandler::DEFAULT_MAX_BODY_SIZE, $this->handler()->maxBodySize());
    }

    public function testKindHeader(): void
    {
        $body = self::batch([self::open(1)]);
        $res = self::post($this->handler(), $body, '');
        self::assertSame(400, $res->status);
        self::assertStringContainsString('no X-Wsbridge-Kind', $res->body);
        $res = self::post($this->handler(), $body, 'event');
        self::assertSame(400, $res->status);
        self::assertStringContainsString('unknown X-Wsbridge-Kind', $res->body);
        // An events body posted as auth is not a handshake.
        self::assertSame(400, self::post($this->handler(), $body, 'auth')->status);
        $this->assertNothingDispatched();
    }

    public function testAnEmptyBatchIsAcknowledged(): void
    {
        self::assertSame(204, self::post($this->handler(), '{"node":0,"events":[]}')->status);
        self::assertSame(204, self::post($this->handler(), '{"node":5,"events":[],"future_field":{"x":1}}')->status);
        $this->assertNothingDispatched();
    }

    public function testUnknownFieldsAreIgnored(): void
    {
        $res = self::post($this->handler(), self::batch([self::open(1, 1, ['future' => ['x' => 1]]), self::message(1, 2, 'hi') + ['extra' => true]]));
        self::assertSame(204, $res->status, $res->body);
        self::assertSame(['open 1', 'message 1 hi'], $this->controller->summary());
    }

    public function testRedeliveriesAreSkippedWithASeqStore(): void
    {
        $store = new MemorySeqStore();
        $h = $this->handler()->withSeqStore($store);
        self::post($h, self::batch([self::open(9), self::message(9, 2, 'one'), self::message(9, 3, 'boom')]));
        // The bridge did not see the answer and sends the batch again, with more.
        self::post($h, self::batch([self::open(9), self::message(9, 2, 'one'), self::message(9, 3, 'boom'), self::message(9, 4, 'two')]));
        self::assertSame(['open 9', 'message 9 one', 'message 9 boom', 'message 9 two'], $this->controller->summary());
        self::assertCount(1, $this->errors, 'the failed event is not retried either');

        // The bridge restarted and numbers its fds from the start again: a new
        // open of fd 9 (another time) is a new connection.
        $this->controller->calls = [];
        self::post($h, self::batch([self::open(9, 1, ['time' => 1764050999000]), self::message(9, 2, 'new run')]));
        self::assertSame(['open 9', 'message 9 new run'], $this->controller->summary());

        // Another node's fd 9 is another connection.
        $this->controller->calls = [];
        self::post($h, self::batch([self::message(9, 2, 'node 1')], 1));
        self::assertSame(['message 9 node 1'], $this->controller->summary());

        // Without a store every delivery is dispatched.
        $this->controller->calls = [];
        $plain = $this->handler();
        self::post($plain, self::batch([self::message(9, 2, 'x')]));
        self::post($plain, self::batch([self::message(9, 2, 'x')]));
        self::assertSame(['message 9 x', 'message 9 x'], $this->controller->summary());
    }

    public function testMemorySeqStoreIsBounded(): void
    {
        $store = new MemorySeqStore(3);
        foreach ([1, 2, 3, 4] as $fd) {
            $store->complete(new Event(Event::MESSAGE, 0, $fd, 5, 0));
        }
        self::assertSame(3, $store->count());
        // fd 1 was forgotten: its redelivery is no longer caught (never a lost event).
        self::assertSame(SeqStore::DISPATCH, $store->claim(new Event(Event::MESSAGE, 0, 1, 5, 0), 10));
        self::assertSame(SeqStore::SKIP, $store->claim(new Event(Event::MESSAGE, 0, 4, 5, 0), 10));
        self::assertSame(SeqStore::DISPATCH, $store->claim(new Event(Event::MESSAGE, 0, 4, 6, 0), 10));
        // fd 4 is claimed (seq 6 running): seq 7 waits.
        self::assertSame(SeqStore::BUSY, $store->claim(new Event(Event::MESSAGE, 0, 4, 7, 0), 10));
        $store->complete(new Event(Event::MESSAGE, 0, 4, 6, 0));
        self::assertSame(SeqStore::DISPATCH, $store->claim(new Event(Event::MESSAGE, 0, 4, 7, 0), 10));
    }

    public function testControllerWithSomeMethods(): void
    {
        $onlyMessages = new class () {
            /** @var list<string> */
            public array $got = [];

            public function onMessage($server, $frame): void
            {
                $this->got[] = $frame->data;
            }
        };
        $h = new EventHandler($onlyMessages, new Sender($this->rpc));
        self::assertSame(204, $h->handle(self::batch([self::open(3), self::message(3, 2, 'x'), self::close(3, 3)]), ['x-wsbridge-kind' => 'events'])->status);
        self::assertSame(['x'], $onlyMessages->got);

        $this->expectException(\WsBridge\Exception\InvalidArgumentException::class);
        new EventHandler(new \stdClass(), new Sender($this->rpc));
    }

    public function testWithersReturnCopies(): void
    {
        $h = $this->handler();
        $other = $h->withMaxBodySize(10)->withSecret(null)->withTolerance(5);
        self::assertNotSame($h, $other);
        self::assertSame(EventHandler::DEFAULT_MAX_BODY_SIZE, $h->maxBodySize());
        self::assertTrue($h->isSigned());
        self::assertFalse($other->isSigned());
        self::assertSame(10, $other->maxBodySize());
        self::assertSame($h->server(), $other->server());
    }
}
