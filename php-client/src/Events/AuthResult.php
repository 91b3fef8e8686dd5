<?php

declare(strict_types=1);

namespace WsBridge\Events;

use WsBridge\Exception\InvalidArgumentException;

/**
 * The answer to a handshake authorization request (docs/PROTOCOL.md,
 * "Handshake authorization"). An authorizer returns one of these, or a
 * shorthand that from() reads:
 *
 *   true                         allow
 *   false, null                  deny with 403
 *   "42" or 42                   allow, bound to user "42"
 *   ['allow' => true, 'user' => '42', 'groups' => ['vip']]
 *   ['allow' => false, 'status' => 401, 'message' => 'bad token']
 */
final class AuthResult
{
    public const MAX_NAME_BYTES = 256;

    /**
     * @param list<string> $groups
     */
    private function __construct(
        public readonly bool $allow,
        public readonly ?string $user = null,
        public readonly array $groups = [],
        public readonly int $status = 403,
        public readonly string $message = '',
    ) {
    }

    /**
     * Upgrades the connection, bound to $user and $groups (1–256 bytes of
     * UTF-8 each) before its open event.
     *
     * @param list<string> $groups
     * @throws \InvalidArgumentException a user or group name that the bridge would refuse
     */
    public static function allow(string|int|null $user = null, array $groups = []): self
    {
        if ($user !== null) {
            $user = (string) $user;
            self::checkName($user, 'user');
        }
        $list = [];
        foreach ($groups as $group) {
            if (!\is_string($group)) {
                throw new InvalidArgumentException('groups must be strings, got ' . \get_debug_type($group));
            }
            self::checkName($group, 'group');
            $list[] = $group;
        }
        return new self(true, $user, $list);
    }

    /**
     * Refuses the handshake with $status (4xx or 5xx) and $message.
     *
     * @throws \InvalidArgumentException a status outside 400..599 or a message that is not UTF-8
     */
    public static function deny(int $status = 403, string $message = ''): self
    {
        if ($status < 400 || $status > 599) {
            throw new InvalidArgumentException("a refusal's status must be 4xx or 5xx, got {$status}");
        }
        if (\preg_match('//u', $message) !== 1) {
            throw new InvalidArgumentException('the refusal message must be UTF-8');
        }
        return new self(false, null, [], $status, $message);
    }

    /**
     * Reads what an authorizer returned.
     *
     * @throws \InvalidArgumentException an answer of another shape
     */
    public static function from(mixed $answer): self
    {
        if ($answer instanceof self) {
            return $answer;
        }
        if ($answer === true) {
            return self::allow();
        }
        if ($answer === false || $answer === null) {
            return self::deny();
        }
        if (\is_string($answer) || \is_int($answer)) {
            return self::allow($answer);
        }
        if (\is_array($answer) && \is_bool($answer['allow'] ?? null)) {
            if ($answer['allow']) {
                $groups = $answer['groups'] ?? [];
                $user = $answer['user'] ?? null;
                if (!\is_array($groups) || !($user === null || \is_string($user) || \is_int($user))) {
                    throw new InvalidArgumentException('an allow answer takes "user" (string) and "groups" (list of strings)');
                }
                return self::allow($user, \array_values($groups));
            }
            $status = $answer['status'] ?? 403;
            $message = $answer['message'] ?? '';
            if (!\is_int($status) || !\is_string($message)) {
                throw new InvalidArgumentException('a deny answer takes "status" (int) and "message" (string)');
            }
            return self::deny($status, $message);
        }
        throw new InvalidArgumentException(
            'an authorizer returns an AuthResult, a bool, a user id, or an array with "allow"; got ' . \get_debug_type($answer)
        );
    }

    /**
     * The JSON body of the answer.
     *
     * @return array{allow: true, user?: string, groups?: list<string>}|array{allow: false, status: int, message: string}
     */
    public function toArray(): array
    {
        if (!$this->allow) {
            return ['allow' => false, 'status' => $this->status, 'message' => $this->message];
        }
        $out = ['allow' => true];
        if ($this->user !== null) {
            $out['user'] = $this->user;
        }
        if ($this->groups !== []) {
            $out['groups'] = $this->groups;
        }
        return $out;
    }

    private static function checkName(string $name, string $what): void
    {
        $len = \strlen($name);
        if ($len < 1 || $len > self::MAX_NAME_BYTES || \preg_match('//u', $name) !== 1) {
            throw new InvalidArgumentException("a {$what} name must be 1-" . self::MAX_NAME_BYTES . ' bytes of UTF-8');
        }
    }
}
