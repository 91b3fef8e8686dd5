<?php

declare(strict_types=1);

namespace WsBridge\Tests\Hyperf;

use PHPUnit\Framework\TestCase;
use Psr\Http\Message\ResponseInterface;
use Psr\Http\Message\ServerRequestInterface;
use Psr\Http\Server\MiddlewareInterface;
use Psr\Http\Server\RequestHandlerInterface;
use WsBridge\Events\EventHandler;
use WsBridge\Hyperf\MiddlewareAuthorizer;
use WsBridge\Hyperf\MiddlewareAuthorizerFactory;
use WsBridge\Sender;
use WsBridge\Tests\Support\RecordingController;
use WsBridge\Tests\Support\RecordingRPC;
use WsBridgeFixtures\Hyperf\TestContainer;
use WsBridgeFixtures\Hyperf\TestResponse;
use WsBridgeFixtures\Hyperf\TestServerRequest;

/**
 * The application's `middlewares.ws` run on the handshake of the bridge's
 * auth requests: a token middleware that answers 401 itself or sets the
 * user, a ban middleware that throws an HTTP exception, and the default.
 */
final class MiddlewareAuthorizerTest extends TestCase
{
    public static function setUpBeforeClass(): void
    {
        require_once \dirname(__DIR__) . '/fixtures/hyperf/load.php';
    }

    private static function token(): MiddlewareInterface
    {
        return new class () implements MiddlewareInterface {
            public function process(ServerRequestInterface $request, RequestHandlerInterface $handler): ResponseInterface
            {
                if ($request->getHeaderLine('authorization') !== 'Bearer good') {
                    return new TestResponse(401, 'token missing or wrong');
                }
                return $handler->handle($request->withAttribute(MiddlewareAuthorizer::USER, 42)
                    ->withAttribute(MiddlewareAuthorizer::GROUPS, ['lobby']));
            }
        };
    }

    private static function ban(): MiddlewareInterface
    {
        return new class () implements MiddlewareInterface {
            public function process(ServerRequestInterface $request, RequestHandlerInterface $handler): ResponseInterface
            {
                if (($request->getCookieParams()['banned'] ?? '') === '1') {
                    throw new class ('you are banned') extends \RuntimeException {
                        public function getStatusCode(): int
                        {
                            return 403;
                        }
                    };
                }
                if (($request->getQueryParams()['crash'] ?? '') === '1') {
                    throw new \DomainException('the middleware is broken');
                }
                return $handler->handle($request);
            }
        };
    }

    private static function config(array $all): object
    {
        return new class ($all) {
            public function __construct(private readonly array $all)
            {
            }

            public function get(string $key, mixed $default = null): mixed
            {
                return $this->all[$key] ?? $default;
            }
        };
    }

    /**
     * @param array<string, string> $headers
     */
    private static function auth(EventHandler $h, array $headers, string $query = ''): array
    {
        $body = \json_encode(['node' => 0, 'path' => '/', 'query' => $query,
            'headers' => \array_map(static fn (string $v): array => [$v], $headers), 'remote_addr' => '10.0.0.1:5']);
        $res = $h->handle($body, ['X-Wsbridge-Kind' => 'auth']);
        return [$res->status, \json_decode($res->body, true)];
    }

    public function testTheAppsWsMiddlewaresDecideTheHandshake(): void
    {
        $c = new TestContainer([
            'Hyperf\Contract\ConfigInterface' => self::config(['middlewares.ws' => ['ban', 'token'], 'wsbridge' => []]),
            'ban' => self::ban(),
            'token' => self::token(),
        ]);
        $authorizer = new MiddlewareAuthorizer($c, ['ban', 'token'], static fn ($r): object => TestServerRequest::fromSwoole($r), static fn (): object => new TestResponse(200));
        $errors = [];
        $h = (new EventHandler(new RecordingController(), new Sender(new RecordingRPC())))->withAuthorizer($authorizer)
            ->withErrorHandler(static function (\Throwable $e) use (&$errors): void {
                $errors[] = $e->getMessage();
            });

        self::assertSame([200, ['allow' => true, 'user' => '42', 'groups' => ['lobby']]], self::auth($h, ['Authorization' => 'Bearer good']));
        self::assertSame([200, ['allow' => false, 'status' => 401, 'message' => 'token missing or wrong']], self::auth($h, ['Authorization' => 'Bearer bad']));
        self::assertSame([200, ['allow' => false, 'status' => 403, 'message' => 'you are banned']], self::auth($h, ['Authorization' => 'Bearer good', 'Cookie' => 'banned=1']));
        [$status] = self::auth($h, ['Authorization' => 'Bearer good'], 'crash=1');
        self::assertSame(500, $status, 'a middleware that fails: the bridge refuses with 503');
        self::assertSame(['the middleware is broken'], $errors);
    }

    public function testTheFactoryReadsMiddlewaresWsOrItsOwnList(): void
    {
        $c = new TestContainer([
            'Hyperf\Contract\ConfigInterface' => self::config(['middlewares.ws' => ['token'], 'wsbridge' => ['events' => ['handshake_middlewares' => ['ban']]]]),
            'ban' => self::ban(),
            'token' => self::token(),
        ]);
        $list = new \ReflectionProperty(MiddlewareAuthorizer::class, 'middlewares');
        $own = (new MiddlewareAuthorizerFactory())($c);
        self::assertSame(['ban'], $list->getValue($own), 'wsbridge.events.handshake_middlewares first');
        $c->set('Hyperf\Contract\ConfigInterface', self::config(['middlewares.ws' => ['token', 'ban'], 'wsbridge' => []]));
        self::assertSame(['token', 'ban'], $list->getValue((new MiddlewareAuthorizerFactory())($c)), 'else middlewares.ws');
        // Without hyperf/http-message and no factories, it says what is missing.
        $this->expectException(\WsBridge\Exception\ConfigurationException::class);
        $this->expectExceptionMessage('hyperf/http-message');
        $own(new \Swoole\Http\Request());
    }
}
