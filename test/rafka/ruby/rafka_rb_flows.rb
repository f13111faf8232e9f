# Drives rafka the way the Ruby client rafka-rb 0.5.0 does, on Debian's redis-rb 4.8: lowercase
# command names, CLIENT SETNAME on every connect (redis-rb's `id:` option), timeouts sent with
# `to_s`, replies taken apart as that client does (an 8-element array, Integer() on partition and
# offset), errors mapped by their `PROD ` / `CONS ` prefixes. Written for the tests from the
# protocol in the spec; it is not rafka-rb's code.
#
#   ruby rafka_rb_flows.rb <host> <port> <topic> <group> <messages>
#
# Prints one JSON report on stdout; the tap test (test/rafka/ruby.ts) makes the assertions.
require 'json'
require 'redis'

host, port, topic, group, count = ARGV
port = Integer(port)
count = Integer(count)

class ProduceError < StandardError; end
class ConsumeError < StandardError; end

# rafka-rb's error mapping: the prefix picks the class and is cut off the message.
def wrap_errors
  yield
rescue Redis::CommandError => e
  raise ProduceError, e.message[5..] if e.message.start_with?('PROD ')
  raise ConsumeError, e.message[5..] if e.message.start_with?('CONS ')

  raise
end

def error_of
  yield
  nil
rescue StandardError => e
  { 'class' => e.class.name, 'message' => e.message }
end

# A consumed message as rafka-rb accepts it, or an error naming what is wrong with it.
def parse_message(reply)
  raise "malformed message: #{reply.inspect}" unless reply.is_a?(Array) && reply.size == 8

  { 'topic' => reply[1], 'partition' => Integer(reply[3]), 'offset' => Integer(reply[5]),
    'value' => reply[7] }
end

report = {}

# Producer: rafka-rb's Producer#produce is RPUSHX on `topics:<topic>[:<key>]`, #flush is DUMP.
producer = Redis.new(host: host, port: port, reconnect_attempts: 0)
report['produced'] = (0...count).map do |i|
  key = i.even? ? nil : "key-#{i % 3}"
  redis_key = +"topics:#{topic}"
  redis_key << ":#{key}" if key
  wrap_errors { producer.rpushx(redis_key, "ruby-#{i}") }
end
report['flush'] = wrap_errors { Integer(producer.dump(5000.to_s)) }
report['produce_error'] = error_of { wrap_errors { producer.rpushx('topics:', 'x') } }
report['producer_quit'] = producer.quit

# Consumer: `<group>:<id>` as the connection name, BLPOP on `topics:<topic>` with its own
# librdkafka settings appended as JSON (rafka-rb's `librdkafka:` option), one ack per message.
consumer_id = "#{group}:ruby-1"
blpop_key = "topics:#{topic}:#{{ 'auto.offset.reset' => 'earliest' }.to_json}"
consumer = Redis.new(host: host, port: port, id: consumer_id, reconnect_attempts: 0)
report['name'] = consumer.call(%i[client getname])
consumed = []
acks = []
timeouts = 0
deadline = Time.now + 60
while consumed.size < count / 2 && Time.now < deadline
  reply = wrap_errors { consumer.blpop(blpop_key, timeout: 5) }
  if reply.nil?
    timeouts += 1
    next
  end
  message = parse_message(reply)
  consumed << message
  acks << wrap_errors do
    consumer.rpush('acks', "#{message['topic']}:#{message['partition']}:#{message['offset']}")
  end
end

# Batch consume as rafka-rb's consume_batch: short float timeouts, then one ack per partition
# holding the highest offset of the batch.
batch = []
while consumed.size + batch.size < count && Time.now < deadline
  reply = wrap_errors { consumer.blpop(blpop_key, timeout: 0.3) }
  batch << parse_message(reply) unless reply.nil?
end
batch_acks = batch.group_by { |m| [m['topic'], m['partition']] }.map do |(t, p), messages|
  wrap_errors { consumer.rpush('acks', "#{t}:#{p}:#{messages.map { |m| m['offset'] }.max}") }
end
consumed.concat(batch)
report['consumed'] = consumed
report['acks'] = acks
report['batch_acks'] = batch_acks
report['timeouts_while_joining'] = timeouts

# An idle BLPOP with a float timeout is nil after about that long.
started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
idle = wrap_errors { consumer.blpop(blpop_key, timeout: 0.3) }
report['idle'] = { 'reply' => idle,
                   'seconds' => Process.clock_gettime(Process::CLOCK_MONOTONIC) - started }

# Errors a Rails app meets, mapped to rafka-rb's classes.
report['bad_ack'] = error_of { wrap_errors { consumer.rpush('acks', 'no-colons') } }
report['name_taken'] = error_of do
  wrap_errors do
    Redis.new(host: host, port: port, id: consumer_id, reconnect_attempts: 0).ping
  end
end

# Stats: HGETALL gives a Hash of integer strings, DEL zeroes it.
stats = consumer.hgetall('stats')
report['stats'] = stats
report['stats_integer_strings'] = !stats.empty? && stats.values.all? { |v| v.match?(/\A\d+\z/) }
report['stats_del'] = consumer.del('stats')
report['consumer_quit'] = consumer.quit

puts JSON.generate(report)
