//! The zone map tab: which node owns each cell of the zone grid, as the watch last said,
//! scrolled with the arrows when the grid is larger than the screen.

use cloudmesh::admin::ZoneInfo;

use crate::console::keymap::{Intent, Scope};

/// The zone map and how far it is scrolled.
#[derive(Debug, Default)]
pub struct ZonesTab {
    /// Zone ownership (`None`: zones are off, or the host has not published a map yet).
    pub map: Option<ZoneInfo>,
    /// How far the map is scrolled (cells right, cells down).
    pub scroll: (u32, u32),
}

impl ZonesTab {
    /// The key scopes in force here: no list, so no cursor keys and no filter.
    pub fn scopes(&self) -> Vec<Scope> {
        vec![Scope::Zones]
    }

    /// What a key does here: the arrows scroll, within the grid.
    pub fn handle(&mut self, intent: Intent) {
        let (w, h) = self.map.as_ref().map_or((0, 0), |z| {
            (z.width.saturating_sub(1), z.height.saturating_sub(1))
        });
        let (x, y) = &mut self.scroll;
        match intent {
            Intent::Left => *x = x.saturating_sub(1),
            Intent::Right => *x = (*x + 1).min(w),
            Intent::Up => *y = y.saturating_sub(1),
            Intent::Down => *y = (*y + 1).min(h),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::fixtures::zones;

    #[test]
    fn scrolling_stops_at_the_edges_of_the_grid() {
        let mut tab = ZonesTab::default();
        tab.handle(Intent::Right);
        tab.handle(Intent::Down);
        assert_eq!(tab.scroll, (0, 0), "no map, nothing to scroll");
        tab.map = Some(zones());
        for _ in 0..10 {
            tab.handle(Intent::Right);
        }
        tab.handle(Intent::Down);
        assert_eq!(tab.scroll, (5, 1), "the fixture grid is 6×4");
        tab.handle(Intent::Left);
        tab.handle(Intent::Up);
        tab.handle(Intent::Up);
        assert_eq!(tab.scroll, (4, 0));
    }
}
