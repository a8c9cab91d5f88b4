/**
 * A broker whose jobs keep their images in an image store: the same Broker, with its image reads
 * (`get` with the image, `image`, `imageAt`, `events`, `history`) answered from the store's objects
 * that the job records, through the process's cache. Jobs stored with their bytes (before the store
 * was configured) are read as before.
 */
import { type StoredEvent, withImage } from "../live/notifications.ts";
import type { Broker, JobView } from "../queue/types.ts";
import type { JobImages } from "./job_images.ts";

/** The reads a stored-images broker answers itself; everything else is the broker's own. */
type ImageReads = Pick<Broker, "get" | "image" | "imageAt" | "events" | "history">;

/** The broker, reading images from the store where its jobs recorded objects. */
export function withImageStore(broker: Broker, images: JobImages): Broker {
  const reads = imageReads(broker, images);
  return new Proxy(broker, {
    get(target, name) {
      if (Object.hasOwn(reads, name)) return reads[name as keyof ImageReads];
      const value = Reflect.get(target, name, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

function imageReads(broker: Broker, images: JobImages): ImageReads {
  /** The `index`-th image of a job that recorded objects; undefined for a job that did not. */
  const stored = async (id: string, index: number): Promise<string | null | undefined> => {
    const job = await broker.get(id);
    if (!job?.objects?.length) return undefined;
    if (job.status !== "succeeded") return null;
    const object = job.objects[index];
    return object ? await images.read(object.key) : null;
  };

  /** The events with a success's image put back from the store, when the log has it empty. */
  const filled = async (id: string, events: StoredEvent[]): Promise<StoredEvent[]> => {
    const empty = events.some((e) => e.notification.type === "succeeded" && !hasImage(e));
    if (!empty) return events;
    const base64 = await stored(id, 0);
    if (!base64) return events;
    return events.map((e) => hasImage(e) ? e : withImage(e, base64));
  };

  return {
    async get(id, options = {}) {
      const job: JobView | null = await broker.get(id, options);
      if (!options.image || !job || job.image || !job.objects?.length) return job;
      if (job.status !== "succeeded") return job;
      const base64 = await images.read(job.objects[0].key);
      if (base64) job.image = base64;
      return job;
    },
    async image(id) {
      const base64 = await stored(id, 0);
      return base64 === undefined ? await broker.image(id) : base64;
    },
    async imageAt(id, index) {
      const base64 = await stored(id, index);
      return base64 === undefined ? await broker.imageAt(id, index) : base64;
    },
    async events(id, options) {
      return await filled(id, await broker.events(id, options));
    },
    async history(id) {
      const found = await broker.history(id);
      return found && { owner: found.owner, events: await filled(id, found.events) };
    },
  };
}

/** True unless the event is a success whose image is left empty (kept in the store). */
function hasImage(event: StoredEvent): boolean {
  const n = event.notification;
  return n.type !== "succeeded" || n.data.image !== "";
}
