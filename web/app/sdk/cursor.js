// Where a device keeps its inbox cursor between runs: the sync algorithm resumes from it, so a
// device that saved seq N never asks for entries up to N again. In a browser, IndexedDB; in
// Node or tests, memory or anything that implements `CursorStore`.
/** Cursors in memory: they last as long as the object. */
export class MemoryCursorStore {
    constructor() {
        this.cursors = new Map();
    }
    async load(userId, deviceId) {
        return this.cursors.get(`${userId}\u0000${deviceId}`);
    }
    async save(userId, deviceId, seq) {
        this.cursors.set(`${userId}\u0000${deviceId}`, seq);
    }
}
/** Cursors in the browser's IndexedDB, one database for the app. */
export class IndexedDbCursorStore {
    constructor(name = "tern") {
        this.name = name;
    }
    open() {
        if (!this.db) {
            this.db = new Promise((resolve, reject) => {
                const request = indexedDB.open(this.name, 1);
                request.onupgradeneeded = () => request.result.createObjectStore("cursors");
                request.onsuccess = () => resolve(request.result);
                request.onerror = () => reject(request.error);
            });
        }
        return this.db;
    }
    async load(userId, deviceId) {
        const db = await this.open();
        return new Promise((resolve, reject) => {
            const get = db.transaction("cursors").objectStore("cursors").get(`${userId}/${deviceId}`);
            get.onsuccess = () => resolve(typeof get.result === "number" ? get.result : undefined);
            get.onerror = () => reject(get.error);
        });
    }
    async save(userId, deviceId, seq) {
        const db = await this.open();
        return new Promise((resolve, reject) => {
            const tx = db.transaction("cursors", "readwrite");
            tx.objectStore("cursors").put(seq, `${userId}/${deviceId}`);
            tx.oncomplete = () => resolve();
            tx.onerror = () => reject(tx.error);
        });
    }
}
