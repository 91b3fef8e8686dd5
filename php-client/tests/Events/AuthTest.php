<?php

declare(strict_types=1);

namespace WsBridge\Tests\Events;

use PHPUnit\Framework\TestCase;
use Swoole\Http\Request;
use WsBridge\Events\AuthResult;
use WsBridge\Events\EventHandler;
use WsBridge\Events\Signature;
use WsBridge\Sender;
use WsBridge\Tests\Support\RecordingController;
use WsBridge\Tests\Support\RecordingRPC;

/**
 * X-Wsbridge-Kind: auth, answered as docs/PROTOCOL.md "Handshake
 * authorization" says.
 */
final class AuthTest extends TestCase
{
    private const NOW = 1764050000;
    private const HANDSHAKE = '{"node":3,"path":"/chat","query":"token=caf%C3%A9&room=1","headers":{"Host":["example.com"],"Cookie":["sid=xyz"],"Origin":["https://example.com"]},"remote_addr":"[2001:db8::1]:443"}';

    /** @var list<\Throwable> */
    private array $errors = [];

    /**
     * @param callable|null $authorizer
     */
    private function ask(?callable $authorizer, string $body = self::HANDSHAKE, array $headers = []): \WsBridge\Events\Response
    {
        $this->errors = [];
        $h = (new EventHandler(new RecordingController(), new Sender(new RecordingRPC())))
            ->withSecret(SignatureTest::SECRET)
            ->withClock(static fn (): int => self::NOW)
            ->withErrorHandler(function (\Throwable $e): void {
                $this->errors[] = $e;
            })
            ->withAuthorizer($authorizer);
        return $h->handle($body, $headers + [
            'X-Wsbridge-Kind' => 'auth',
            'X-Wsbridge-Timestamp' => (string) self::NOW,
            'X-Wsbridge-Signature' => Signature::sign(SignatureTest::SECRET, self::NOW, $body),
        ]);
    }

    /**
     * @return array<string, mixed>
     */
    private static function answer(\WsBridge\Events\Response $res): array
    {
        self::assertSame('application/json', $res->headers['Content-Type'] ?? null);
        return \json_decode($res->body, true, 8, \JSON_THROW_ON_ERROR);
    }

    public function testTheAuthorizerSeesTheHandshakeAsARequest(): void
    {
        $seen = null;
        $res = $this->ask(static function (Request $request) use (&$seen): AuthResult {
            $seen = $request;
            return AuthResult::allow('42', ['vip', 'room:1']);
        });
        self::assertSame(200, $res->status);
        self::assertSame(['allow' => true, 'user' => '42', 'groups' => ['vip', 'room:1']], self::answer($res));
        self::assertInstanceOf(Request::class, $seen);
        self::assertSame(0, $seen->fd, 'no connection yet');
        self::assertSame(['token' => "caf\u{e9}", 'room' => '1'], $seen->get);
        self::assertSame('example.com', $seen->header['host']);
        self::assertSame('https://example.com', $seen->header['origin']);
        self::assertSame(['sid' => 'xyz'], $seen->cookie);
        self::assertSame('/chat', $seen->server['request_uri']);
        self::assertSame('2001:db8::1', $seen->server['remote_addr']);
        self::assertSame(443, $seen->server['remote_port']);
        self::assertSame(self::NOW, $seen->server['request_time']);
    }

    /**
     * @return array<string, array{mixed, array<string, mixed>}>
     */
    public static function answers(): array
    {
        return [
            'true' => [true, ['allow' => true]],
            'false' => [false, ['allow' => false, 'status' => 403, 'message' => '']],
            'null (forgot to return)' => [null, ['allow' => false, 'status' => 403, 'message' => '']],
            'a user id' => ['u-7', ['allow' => true, 'user' => 'u-7']],
            'an int user id' => [42, ['allow' => true, 'user' => '42']],
            'allow()' => [AuthResult::allow(), ['allow' => true]],
            'allow with groups only' => [AuthResult::allow(null, ['a', 'b']), ['allow' => true, 'groups' => ['a', 'b']]],
            'deny 401' => [AuthResult::deny(401, 'bad token'), ['allow' => false, 'status' => 401, 'message' => 'bad token']],
            'deny 503' => [AuthResult::deny(503, "r\u{e9}essayez"), ['allow' => false, 'status' => 503, 'message' => "r\u{e9}essayez"]],
            'array allow' => [['allow' => true, 'user' => '42', 'groups' => ['vip']], ['allow' => true, 'user' => '42', 'groups' => ['vip']]],
            'array deny' => [['allow' => false, 'status' => 429, 'message' => 'slow down'], ['allow' => false, 'status' => 429, 'message' => 'slow down']],
            'array deny, defaults' => [['allow' => false], ['allow' => false, 'status' => 403, 'message' => '']],
        ];
    }

    /**
     * @dataProvider answers
     * @param array<string, mixed> $want
     */
    public function testAnswers(mixed $answer, array $want): void
    {
        $res = $this->ask(static fn () => $answer);
        self::assertSame(200, $res->status);
        self::assertSame($want, self::answer($res));
        self::assertSame([], $this->errors);
    }

    /**
     * @return array<string, array{callable}>
     */
    public static function failingAuthorizers(): array
    {
        return [
            'throws' => [static function (): never {
                throw new \RuntimeException('the user store is down');
            }],
            'an object' => [static fn () => new \stdClass()],
            'a float' => [static fn () => 1.5],
            'an array without allow' => [static fn () => ['user' => '42']],
            'an empty user' => [static fn () => ['allow' => true, 'user' => '']],
            'a user of 257 bytes' => [static fn () => AuthResult::allow(\str_repeat('u', 257))],
            'a group that is not UTF-8' => [static fn () => ['allow' => true, 'groups' => ["\xff"]]],
            'a group that is a number' => [static fn () => ['allow' => true, 'groups' => [7]]],
            'a deny status of 200' => [static fn () => ['allow' => false, 'status' => 200]],
            'a deny status of 302' => [static fn () => AuthResult::deny(302)],
        ];
    }

    /**
     * The bridge refuses the handshake with 503 when the answer is a 5xx.
     *
     * @dataProvider failingAuthorizers
     */
    public function testAFailingAuthorizerIs500(callable $authorizer): void
    {
        $res = $this->ask($authorizer);
        self::assertSame(500, $res->status);
        self::assertSame(['error' => 'the authorizer failed'], self::answer($res));
        self::assertCount(1, $this->errors);
    }

    public function testNoAuthorizerRefusesEveryHandshake(): void
    {
        $res = $this->ask(null);
        self::assertSame(200, $res->status);
        self::assertSame(['allow' => false, 'status' => 403, 'message' => 'no authorizer is configured'], self::answer($res));
        self::assertCount(1, $this->errors, 'the misconfiguration is reported');
    }

    public function testAuthRequestsAreCheckedLikeEvents(): void
    {
        $called = false;
        $allow = static function () use (&$called): bool {
            $called = true;
            return true;
        };
        self::assertSame(401, $this->ask($allow, self::HANDSHAKE, ['X-Wsbridge-Signature' => Signature::sign('wrong', self::NOW, self::HANDSHAKE)])->status);
        self::assertSame(401, $this->ask($allow, self::HANDSHAKE, ['X-Wsbridge-Signature' => ''])->status);
        foreach (
            [
            '{"node":0}',
            '{"node":0,"path":"","remote_addr":"a:1"}',
            '{"node":0,"path":"/","remote_addr":"a:1","headers":{"Host":"x"}}',
            '{"node":0,"path":"/","remote_addr":7}',
            '{"path":"/","remote_addr":"a:1"}',
            'not json',
            ] as $body
        ) {
            self::assertSame(400, $this->ask($allow, $body)->status, $body);
        }
        self::assertFalse($called);
        self::assertSame(200, $this->ask($allow, '{"node":0,"path":"/","remote_addr":"a:1"}')->status, 'query and headers may be left out');
        self::assertTrue($called);
    }
}
