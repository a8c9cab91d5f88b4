/** The seed's notice of a job's end, as the Socket.IO bridge emits it, and the bridge's counters. */
import { Counter, type Registry } from "prom-client";
import type { Notification } from "./notifications.ts";

/** A notification as the seed emits it: `data` is `{image}` (a data URL) on success, else the user's message. */
export interface SeedNotice {
  Id: string;
  success: boolean;
  data: { image: string } | string;
}

/** The emit's second argument: which event of the job this notice is (the same on every repeat). */
export interface NoticeMeta {
  event_id: string;
}

/** The metric hooks of a Socket.IO notifier. */
export interface NoticeCounters {
  onEmitted: () => void;
  onConfirmed: () => void;
  onDropped: () => void;
}

/** The seed's notice of a job's end, from its terminal notification (images included). */
export function seedNotice(notification: Notification): SeedNotice {
  const Id = notification.id;
  if (notification.type === "succeeded") {
    return { Id, success: true, data: { image: notification.data.image } };
  }
  if (notification.type === "failed" || notification.type === "canceled") {
    return { Id, success: false, data: notification.error };
  }
  throw new RangeError(`Cannot build the seed's notice: ${notification.type} is not an end`);
}

/** The metric hooks of a notifier, counted on `registry` as `socket_io_notifications_total{result}`. */
export function socketIoCounters(
  registry: Registry,
): NoticeCounters {
  const counter = new Counter({
    name: "socket_io_notifications_total",
    help:
      "Terminal notices for the seed's Socket.IO service, by result (emitted, confirmed, dropped)",
    labelNames: ["result"],
    registers: [registry],
  });
  for (const result of ["emitted", "confirmed", "dropped"]) counter.inc({ result }, 0);
  return {
    onEmitted: () => counter.inc({ result: "emitted" }),
    onConfirmed: () => counter.inc({ result: "confirmed" }),
    onDropped: () => counter.inc({ result: "dropped" }),
  };
}
