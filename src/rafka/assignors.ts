/**
 * Kafka's standard `range` and `roundrobin` assignors with the standard consumer-protocol
 * encoding, so a group can mix rafka with librdkafka and Java members. kafkajs's own round-robin
 * assignor is named `RoundRobinAssigner`, which those members do not accept. Each member is
 * assigned only topics it subscribed to.
 */
import { AssignerProtocol, type PartitionAssigner } from 'kafkajs';

export type AssignorName = 'range' | 'roundrobin';

/** memberId → topic → partitions. */
export type Plan = Map<string, Map<string, number[]>>;

export interface GroupMember {
  memberId: string;
  topics: string[];
}

function add(plan: Plan, memberId: string, topic: string, partition: number): void {
  let topics = plan.get(memberId);
  if (!topics) plan.set(memberId, (topics = new Map<string, number[]>()));
  let partitions = topics.get(topic);
  if (!partitions) topics.set(topic, (partitions = []));
  partitions.push(partition);
}

function emptyPlan(members: readonly GroupMember[]): Plan {
  return new Map(members.map((m) => [m.memberId, new Map<string, number[]>()]));
}

/**
 * Per topic, the subscribed members sorted by id get contiguous ranges, the first ones one extra.
 */
export function rangeAssign(
  members: readonly GroupMember[],
  partitions: Map<string, number>,
): Plan {
  const plan = emptyPlan(members);
  for (const [topic, count] of [...partitions].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const subscribed = members
      .filter((m) => m.topics.includes(topic))
      .map((m) => m.memberId)
      .sort();
    if (subscribed.length === 0) continue;
    const each = Math.floor(count / subscribed.length);
    const extra = count % subscribed.length;
    subscribed.forEach((memberId, i) => {
      const start = i * each + Math.min(i, extra);
      const length = each + (i < extra ? 1 : 0);
      for (let p = start; p < start + length; p++) add(plan, memberId, topic, p);
    });
  }
  return plan;
}

/** All partitions sorted by topic then number, dealt round the sorted members that subscribed. */
export function roundRobinAssign(
  members: readonly GroupMember[],
  partitions: Map<string, number>,
): Plan {
  const plan = emptyPlan(members);
  const sorted = [...members].sort((a, b) => (a.memberId < b.memberId ? -1 : 1));
  if (sorted.length === 0) return plan;
  let cursor = 0;
  for (const [topic, count] of [...partitions].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    if (!sorted.some((m) => m.topics.includes(topic))) continue;
    for (let p = 0; p < count; p++) {
      while (!sorted[cursor % sorted.length].topics.includes(topic)) cursor++;
      add(plan, sorted[cursor % sorted.length].memberId, topic, p);
      cursor++;
    }
  }
  return plan;
}

const ALGORITHMS: Record<AssignorName, typeof rangeAssign> = {
  range: rangeAssign,
  roundrobin: roundRobinAssign,
};

/** A kafkajs assigner for `name`, decoding every member's own subscription. */
export function kafkajsAssigner(name: AssignorName): PartitionAssigner {
  return ({ cluster }) => ({
    name,
    version: 0,
    async assign({ members }) {
      const decoded: GroupMember[] = members.map((m) => ({
        memberId: m.memberId,
        topics: AssignerProtocol.MemberMetadata.decode(m.memberMetadata)?.topics ?? [],
      }));
      const topics = [...new Set(decoded.flatMap((m) => m.topics))];
      // Other members may subscribe to topics this leader does not read; fetch those too.
      const withCluster = cluster as typeof cluster & {
        addMultipleTargetTopics?: (t: string[]) => Promise<void>;
      };
      await withCluster.addMultipleTargetTopics?.(topics).catch(() => undefined);
      const counts = new Map<string, number>();
      for (const topic of topics) {
        try {
          const count = cluster.findTopicPartitionMetadata(topic).length;
          if (count > 0) counts.set(topic, count);
        } catch {
          // A topic without metadata (deleted, not created yet) gets no partitions.
        }
      }
      const plan = ALGORITHMS[name](decoded, counts);
      return [...plan].map(([memberId, assignment]) => ({
        memberId,
        memberAssignment: AssignerProtocol.MemberAssignment.encode({
          version: 0,
          assignment: Object.fromEntries(assignment),
          userData: Buffer.alloc(0),
        }),
      }));
    },
    protocol({ topics }) {
      return {
        name,
        metadata: AssignerProtocol.MemberMetadata.encode({
          version: 0,
          topics,
          userData: Buffer.alloc(0),
        }),
      };
    },
  });
}
